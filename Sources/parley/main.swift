import Foundation
import ParleyCore

/// `parley`: one executable, one subcommand per job. Each subcommand parses
/// its own flags and answers `--help`; exit codes follow `ExitCode`.
let version = "0.1.0"

struct Subcommand {
    let name: String
    let summary: String
    let run: ([String]) -> Int32
}

let subcommands: [Subcommand] = [
    Subcommand(name: "serve", summary: "run the call server daemon (SFU, STUN, signalling, HTTP)", run: ServeCommand.main),
    Subcommand(name: "token", summary: "mint a signed access token for a user and room", run: TokenCommand.main),
    Subcommand(name: "sdp", summary: "join a room and print an SDP with a=crypto for ffmpeg or GStreamer", run: SDPCommand.main),
    Subcommand(name: "transcode", summary: "turn a video into an HLS adaptive-bitrate ladder", run: TranscodeCommand.main),
    Subcommand(name: "worker", summary: "run the transcoding worker daemon (SQLite job queue, spool directory)", run: WorkerCommand.main),
    Subcommand(name: "record", summary: "export a call recording to WebM/Matroska per participant and an Ogg room mix", run: RecordCommand.main),
    Subcommand(name: "load", summary: "synthetic participants against a running server: loss, jitter, latency, join time", run: LoadCommand.main),
    Subcommand(name: "bench", summary: "benchmark servers for the scripts in tools/bench/", run: BenchCommand.main),
]

@MainActor func usage() -> String {
    var s = """
    parley \(version): a real-time media and messaging engine

    Usage: parley <command> [options]

    Commands:

    """
    let width = subcommands.map(\.name.count).max() ?? 0
    for c in subcommands {
        s += "  \(c.name)\(String(repeating: " ", count: width - c.name.count + 2))\(c.summary)\n"
    }
    s += """

    Options:
      --help       show this help (every command takes --help too)
      --version    print the version

    """
    return s
}

var args = Array(CommandLine.arguments.dropFirst())
guard let first = args.first else {
    printError(usage(), terminator: "")
    exit(ExitCode.usage)
}
switch first {
case "--help", "-h", "help":
    if args.count > 1, let c = subcommands.first(where: { $0.name == args[1] }) {
        exit(c.run(["--help"]))
    }
    print(usage(), terminator: "")
    exit(ExitCode.ok)
case "--version", "version":
    print("parley \(version)")
    exit(ExitCode.ok)
default:
    guard let c = subcommands.first(where: { $0.name == first }) else {
        printError("parley: unknown command '\(first)'\n\n\(usage())", terminator: "")
        exit(ExitCode.usage)
    }
    args.removeFirst()
    exit(c.run(args))
}
