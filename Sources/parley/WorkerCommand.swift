import Foundation
import ParleyCore
import ParleyRecord
import ParleyTranscode

/// `parley worker`: the transcoding daemon.
enum WorkerCommand {
    static let help = """
    Usage: parley worker [options]

    Runs transcoding jobs from the queue in DATA-DIR/parley.db. Jobs come
    from `parley transcode INPUT --enqueue`, `POST /jobs` on `parley serve`,
    or files dropped into DATA-DIR/spool/incoming/. Ladders are written to
    DATA-DIR/hls/ASSET/. A job that failed for a passing reason (I/O error,
    full disk, encoder failure) is retried with exponential backoff; bad
    input (not a media file, no video stream, unsupported codec) fails at
    once. Jobs left running by a killed worker are re-queued at start.
    SIGINT/SIGTERM stop cleanly (running jobs go back to the queue).

    Options:
      --data-dir DIR          data directory (default ./var)
      --concurrency N         jobs at a time (default 1)
      --max-attempts N        attempts per job before it is marked failed (default 3)
      --retry-base SECONDS    first retry delay, doubled each attempt (default 2)
      --poll SECONDS          queue/spool poll interval (default 0.5)
      --once                  exit when nothing is queued, running or spooled
      --ladder, --format, --preset, --segment-seconds
                              options for jobs made from spool files
      --record-grid           record-export jobs also write grid.webm (the
                              room's video in a grid, the mix as sound)
      --record-grid-size WxH  its canvas, even, 160x120 to 1920x1080
                              (default 1280x720)
      --record-grid-max-tiles N
                              video tracks in it, 1 to 16 (default 9)
      --help                  show this help

    Exit codes: 0 stopped cleanly, 1 could not start (e.g. another worker
    holds the data directory), 2 usage error.

    """

    static func main(_ args: [String]) -> Int32 {
        let a: Arguments
        do {
            a = try Arguments(args, options: ["data-dir", "concurrency", "max-attempts", "retry-base", "poll",
                                              "ladder", "format", "preset", "segment-seconds", "audio-bitrate",
                                              "record-grid-size", "record-grid-max-tiles"],
                              flags: ["once", "no-thumbnails", "record-grid"])
        } catch {
            printError("parley worker: \(error)")
            return ExitCode.usage
        }
        if a.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
        func usage(_ m: String) -> Int32 {
            printError("parley worker: \(m)")
            return ExitCode.usage
        }
        guard a.positionals.isEmpty else { return usage("unexpected argument \(a.positionals[0])") }
        var c = Worker.Config()
        c.dataDir = a["data-dir"] ?? "./var"
        if let v = a["concurrency"] { guard let n = Int(v), n >= 1, n <= 64 else { return usage("--concurrency must be 1-64") }; c.concurrency = n }
        if let v = a["max-attempts"] { guard let n = Int(v), n >= 1, n <= 100 else { return usage("--max-attempts must be 1-100") }; c.maxAttempts = n }
        if let v = a["retry-base"] { guard let n = Double(v), n >= 0, n <= 3600 else { return usage("--retry-base must be 0-3600") }; c.retryBase = n }
        if let v = a["poll"] { guard let n = Double(v), n >= 0.05, n <= 60 else { return usage("--poll must be 0.05-60") }; c.pollInterval = n }
        c.once = a.has("once")
        do { c.recordExport.grid = try RecordCommand.parseGrid(a, prefix: "record-") } catch { return usage("\(error)") }
        do { c.spoolOptions = try TranscodeCommand.parseOptions(a, input: "", output: "") } catch { return usage("\(error)") }

        let worker: Worker
        do { worker = try Worker(config: c) } catch {
            printError("parley worker: \(error)")
            return ExitCode.failure
        }
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        var sources: [DispatchSourceSignal] = []
        for s in [SIGINT, SIGTERM] {
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler { worker.stop() }
            src.resume()
            sources.append(src)
        }
        defer { sources.forEach { $0.cancel() } }
        do {
            try worker.run(ready: {
                FileHandle.standardOutput.write(Data("worker ready \(worker.dataDir)\n".utf8))
            })
        } catch {
            printError("parley worker: \(error)")
            return ExitCode.failure
        }
        return ExitCode.ok
    }
}
