import Foundation
import ParleyCore
import ParleyServer

/// `parley serve`: the daemon.
enum ServeCommand {
    static var help: String {
        var s = """
        Usage: parley serve [options]

        Runs the call server: HTTP (/healthz, /metrics) and WebSocket signalling
        on --listen, media (RTP/RTCP/STUN) on UDP --media-ports, plain STUN on
        --stun. Prints one `listening <what> <address>` line per listener when
        ready. SIGINT/SIGTERM stop it cleanly.

        Options (each is also a key in parley.json; flags win):
          --config FILE           config file (default ./parley.json if present)

        """
        for (key, help) in ServerConfig.keys {
            let flag = ServerConfig.booleanKeys.contains(key) ? "--\(key)" : "--\(key) V"
            s += "  \(flag.padding(toLength: 24, withPad: " ", startingAt: 0)) \(help)\n"
        }
        return s
    }

    static func main(_ argv: [String]) -> Int32 {
        let config: ServerConfig
        do {
            let options = Set(ServerConfig.keys.map(\.key)).subtracting(ServerConfig.booleanKeys).union(["config"])
            let args = try Arguments(argv, options: options, flags: ServerConfig.booleanKeys)
            if args.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
            guard args.positionals.isEmpty else { throw Arguments.UsageError("unexpected argument \(args.positionals[0])") }
            config = try ServerConfig.resolve(flags: args.values, switches: args.switches)
        } catch {
            printError("parley serve: \(error)")
            return ExitCode.usage
        }
        return Daemon.run(config: config)
    }
}
