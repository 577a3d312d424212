import Foundation
import ParleyCore
import ParleyRecord

/// `parley record export DIR`: player-ready files from a recording directory.
enum RecordCommand {
    static let help = """
    Usage: parley record export DIR

    Exports a recording (a directory under DATA-DIR/recordings/, as the
    server wrote it, or left by a crash) into files any player opens, in
    the same directory:
      NAME.webm    per participant whose tracks are all VP8 and Opus
      NAME.mkv     per participant with other codecs (H.264)
      mix.ogg      every participant's audio mixed, on the room's clock
    Timestamps come from RTP; audio and video are aligned through the
    senders' RTCP sender reports; gaps stay gaps. A capture file torn by a
    crash is read up to its last whole packet.

    Options:
      --help       show this help

    Exit codes: 0 exported, 1 DIR is not a readable recording or export
    failed, 2 usage error.

    """

    static func main(_ args: [String]) -> Int32 {
        let a: Arguments
        do { a = try Arguments(args, options: [], flags: []) } catch {
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
        do {
            let result = try Exporter.export(directory: a.positionals[1])
            for f in result.files { print(f) }
            if result.tornBytes > 0 {
                printError("parley record export: skipped \(result.tornBytes) bytes of a torn last packet (the recorder was stopped mid-write)")
            }
            return ExitCode.ok
        } catch {
            printError("parley record export: \(error)")
            return ExitCode.failure
        }
    }
}
