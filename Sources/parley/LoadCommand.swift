import Foundation
import ParleyCore
import ParleyLoad

/// `parley load`: synthetic participants against a running `parley serve`.
enum LoadCommand {
    static let help = """
    Usage: parley load media --url wss://HOST:PORT --secret-file FILE [options]

    Puts synthetic participants through a running `parley serve`, as real
    clients: each takes a token, opens the (TLS) WebSocket, joins, latches
    with STUN (answering the relay's consent check) and exchanges SRTP.
    Publishers send real Opus frames of a tone every 20 ms and, with
    --video, frames as bursts of <= 1200-byte RTP packets (a keyframe every
    --keyframe-interval, and when a PLI asks); everyone sends RTCP SR/RR each
    second, and publishers answer NACKs. Every packet carries its send time
    (RTP header extension, RFC 8285), so every receiver measures loss,
    duplicates, reordering, RFC 3550 jitter and one-way latency.

    Prints a live line each second, then a table. Chat mode (`parley load
    chat`) is not built yet: it needs the chat protocol.

    Options:
      --url URL                 wss://HOST:PORT (ws:// against serve --insecure)
      --rooms N                 rooms (default 1)
      --per-room N              participants per room (default 2)
      --publishers-per-room N   the first N of each room publish (default: all)
      --duration D              media time after the last participant started (default 10s)
      --ramp D                  start participants evenly over D (default 0)
      --audio opus|none         audio track (default opus)
      --video RATE@FPS          video track, e.g. 1.5mbps@30 (default none)
      --keyframe-interval D     video keyframe interval (default 2s; after --video)
      --suite CM|GCM            SRTP suite (AES_CM_128_HMAC_SHA1_80 or AEAD_AES_128_GCM; default CM)
      --secret-file FILE        the server's DATA-DIR/secret: mint a token per participant
      --token-file FILE         or take tokens from FILE, one per line (one per participant)
      --insecure                accept the server's certificate without checking it
      --fingerprint SHA256      accept only a server certificate with this fingerprint
      --bind IP[,IP...]         local addresses to spread participants over (e.g. 127.0.0.2,127.0.0.3)
      --loops N                 event loops (threads) of the generator (default 1)
      --room-prefix P           rooms are P-0, P-1, ... (default load)
      --max-loss PCT            fail (exit 1) when loss is over PCT (e.g. 0.5%)
      --max-p99 D               fail when the one-way latency p99 is over D (e.g. 20ms)
      --max-join D              fail when the join time p99 (connect -> first media) is over D,
                                or a receiving participant never got media
      --json FILE               write the report as JSON
      --html FILE               write the report as one self-contained HTML page (inline SVG charts)
      --quiet                   no live lines

    Exit codes: 0 the run passed its thresholds, 1 a threshold failed (or
    nobody could join), 2 usage error.

    """

    static func main(_ argv: [String]) -> Int32 {
        guard let mode = argv.first, !mode.hasPrefix("-") else {
            if argv.contains("--help") || argv.contains("-h") { print(help, terminator: ""); return ExitCode.ok }
            printError("parley load: say media\n\n\(help)", terminator: "")
            return ExitCode.usage
        }
        switch mode {
        case "media": return media(Array(argv.dropFirst()))
        case "chat":
            if argv.contains("--help") { print(help, terminator: ""); return ExitCode.ok }
            printError("parley load chat: not available yet (it needs the chat protocol, issue #16)")
            return ExitCode.usage
        default:
            printError("parley load: unknown mode '\(mode)'\n\n\(help)", terminator: "")
            return ExitCode.usage
        }
    }

    static func media(_ argv: [String]) -> Int32 {
        let args: Arguments
        do {
            args = try Arguments(argv, options: MediaLoadOptions.valueFlags.union(["json", "html"]),
                                 flags: MediaLoadOptions.switchFlags.union(["quiet"]))
        } catch {
            printError("parley load media: \(error)\n\n\(help)", terminator: "")
            return ExitCode.usage
        }
        if args.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
        guard args.positionals.isEmpty else {
            printError("parley load media: unexpected argument \(args.positionals[0])")
            return ExitCode.usage
        }
        var o = MediaLoadOptions()
        do {
            // --video before --keyframe-interval, whatever order they came in.
            let order = ["video"] + args.values.keys.filter { $0 != "video" && $0 != "json" && $0 != "html" }.sorted()
            for name in order { if let v = args[name] { try o.apply(name, v) } }
            for name in MediaLoadOptions.switchFlags where args.has(name) { try o.apply(name, "") }
            try o.validate()
        } catch {
            printError("parley load media: \(error)")
            return ExitCode.usage
        }
        let quiet = args.has("quiet")
        let report: LoadReport
        do {
            report = try MediaLoad.run(o) { line in if !quiet { printError(line) } }
        } catch {
            printError("parley load media: \(error)")
            return ExitCode.failure
        }
        print(report.table, terminator: "")
        if let path = args["json"], !write(report.json.serialized + "\n", to: path) { return ExitCode.failure }
        if let path = args["html"], !write(report.html, to: path) { return ExitCode.failure }
        return report.passed ? ExitCode.ok : ExitCode.failure
    }

    static func write(_ text: String, to path: String) -> Bool {
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            printError("parley load media: cannot write \(path): \(error)")
            return false
        }
        return true
    }
}
