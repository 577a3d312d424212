import ParleyBench
import ParleyCore

/// `parley bench NAME …`: the Parley side of the scripts in tools/bench/
/// (each script runs a baseline and this in one invocation).
enum BenchCommand {
    static let servers: [(name: String, summary: String, run: @Sendable ([String]) -> Int32)] = [
        ("udp-echo", "echo UDP datagrams with recvmmsg/sendmmsg on one event loop", { UDPEchoBench.run(args: $0) }),
        ("relay", "the SFU on one event loop with fixed rooms and participants (tools/bench/relay)", { RelayBench.main($0) }),
        ("srtp", "the SFU with hop-by-hop SRTP on one event loop (tools/bench/srtp)", { SRTPBench.main($0) }),
        ("record-room", "records a room from plain RTP senders, for export costs (tools/bench/record-grid)", { RecordRoomBench.main($0) }),
    ]

    static var help: String {
        var s = "Usage: parley bench <name> [options]\n\nBenchmark servers driven by the scripts in tools/bench/:\n"
        for b in servers { s += "  \(b.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(b.summary)\n" }
        s += "\n`parley bench <name> --help` shows each one's options.\n"
        return s
    }

    static func main(_ args: [String]) -> Int32 {
        guard let name = args.first, !name.hasPrefix("-") else {
            print(help, terminator: "")
            return args.isEmpty ? ExitCode.usage : ExitCode.ok
        }
        guard let b = servers.first(where: { $0.name == name }) else {
            print("parley bench: unknown benchmark '\(name)'\n\n\(help)")
            return ExitCode.usage
        }
        return b.run(Array(args.dropFirst()))
    }
}
