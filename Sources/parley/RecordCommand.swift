import Foundation
import ParleyCore
import ParleyRecord
import ParleyTranscode

/// `parley record export DIR`: player-ready files from a recording directory.
enum RecordCommand {
    static let help = """
    Usage: parley record export DIR
           parley record export --grid [--grid-size WxH] [--grid-max-tiles N] DIR
           parley record export --enqueue ID [--data-dir DIR]

    Exports a recording (a directory under DATA-DIR/recordings/, as the
    server wrote it, or left by a crash) into files any player opens, in
    the same directory:
      NAME.webm    per participant whose tracks are all VP8 and Opus
      NAME.mkv     per participant with other codecs (H.264)
      mix.ogg      every participant's audio mixed, on the room's clock
      grid.webm    with --grid: the video tracks side by side in a grid
                   (VP8, 15 fps; each tile the track's latest picture,
                   black before it started and after its participant
                   left), with mix.ogg as its sound
    Timestamps come from RTP; audio and video are aligned through the
    senders' RTCP sender reports; gaps stay gaps. A capture file torn by a
    crash is read up to its last whole packet. The capture files are
    streamed: memory does not grow with the recording's length.

    With --enqueue, nothing is exported here: a record-export job naming
    recording ID (a name under DATA-DIR/recordings, never a path) is queued
    in DATA-DIR/parley.db for `parley worker`, unless one is already queued
    or running; the job's id is printed.

    Options:
      --grid            also write grid.webm (decodes and encodes video:
                        costs far more CPU than the rest of the export)
      --grid-size WxH   the grid's canvas, even, 160x120 to 1920x1080
                        (default 1280x720)
      --grid-max-tiles N  video tracks in the grid, 1 to 16, the first to
                        start first (default 9); the others are left out
      --enqueue         queue the export of recording ID for parley worker
      --data-dir DIR    data directory with --enqueue (default ./var)
      --help            show this help

    Exit codes: 0 exported (or queued), 1 DIR is not a readable recording,
    export failed or the queue could not be written, 2 usage error.

    """

    static func main(_ args: [String]) -> Int32 {
        let a: Arguments
        do { a = try Arguments(args, options: ["data-dir", "grid-size", "grid-max-tiles"], flags: ["enqueue", "grid"]) } catch {
            printError("parley record: \(error)\n\nUsage: parley record export DIR (--help for more)")
            return ExitCode.usage
        }
        if a.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
        guard a.positionals.first == "export" else {
            printError("parley record: \(a.positionals.first.map { "unknown subcommand '\($0)'" } ?? "missing subcommand")\n\nUsage: parley record export DIR (--help for more)")
            return ExitCode.usage
        }
        guard a.positionals.count == 2 else {
            printError("parley record export: \(a.positionals.count < 2 ? "missing DIR" : "one DIR only")\n\nUsage: parley record export DIR (--help for more)")
            return ExitCode.usage
        }
        if a.has("enqueue") {
            let id = a.positionals[1]
            guard !id.isEmpty, RecordingIndex.safeName(id) == id else {
                printError("parley record export: --enqueue takes a recording id (letters, digits, - and _), not a path")
                return ExitCode.usage
            }
            do {
                let queue = try SQLiteJobQueue.open(dataDir: a["data-dir"] ?? "./var")
                print(try queue.enqueueRecordExport(recording: id))
                return ExitCode.ok
            } catch {
                printError("parley record export: \(error)")
                return ExitCode.failure
            }
        }
        var options = ExportOptions()
        do { options.grid = try parseGrid(a, prefix: "") } catch {
            printError("parley record export: \(error)")
            return ExitCode.usage
        }
        do {
            let result = try Exporter.export(directory: a.positionals[1], options: options)
            for f in result.files { print(f) }
            if result.tracksLeftOutOfGrid > 0 {
                printError("parley record export: \(result.tracksLeftOutOfGrid) video tracks left out of grid.webm (--grid-max-tiles)")
            }
            if result.tornBytes > 0 {
                printError("parley record export: skipped \(result.tornBytes) bytes of a torn last packet (the recorder was stopped mid-write)")
            }
            return ExitCode.ok
        } catch {
            printError("parley record export: \(error)")
            return ExitCode.failure
        }
    }

    /// The composite's flags: `--PREFIXgrid` turns it on, `--PREFIXgrid-size
    /// WxH` and `--PREFIXgrid-max-tiles N` shape it (only with the first).
    /// Nil when off; throws a usage message.
    static func parseGrid(_ a: Arguments, prefix: String) throws -> GridOptions? {
        let on = prefix + "grid", size = prefix + "grid-size", tiles = prefix + "grid-max-tiles"
        guard a.has(on) else {
            if a[size] != nil || a[tiles] != nil { throw Arguments.UsageError("--\(size) and --\(tiles) go with --\(on)") }
            return nil
        }
        var g = GridOptions()
        if let s = a[size] {
            guard let (w, h) = GridOptions.size(s) else { throw Arguments.UsageError("--\(size) takes WIDTHxHEIGHT, not '\(s)'") }
            g.width = w; g.height = h
        }
        if let n = a[tiles] {
            guard let v = Int(n) else { throw Arguments.UsageError("--\(tiles) takes a number, not '\(n)'") }
            g.maxTiles = v
        }
        do { try g.validate() } catch RecordError.export(let m) { throw Arguments.UsageError(m) }
        return g
    }
}
