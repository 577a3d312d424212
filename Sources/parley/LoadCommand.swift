import Foundation
import ParleyCore
import ParleyLoad
import Synchronization

/// `parley load`: synthetic participants against a running `parley serve`.
enum LoadCommand {
    static let help = """
    Usage: parley load media --url wss://HOST:PORT --secret-file FILE [options]
           parley load --scenario FILE --url wss://HOST:PORT --secret-file FILE [options]

    Puts synthetic participants through a running `parley serve`, as real
    clients: each takes a token, opens the (TLS) WebSocket, joins, latches
    with STUN (answering the relay's consent check) and exchanges SRTP.
    Publishers send real Opus frames of a tone every 20 ms and, with
    --video, frames as bursts of <= 1200-byte RTP packets (a keyframe every
    --keyframe-interval, and when a PLI asks); everyone sends RTCP SR/RR each
    second, and publishers answer NACKs. Every packet carries its send time
    (RTP header extension, RFC 8285), so every receiver measures loss,
    duplicates, reordering, RFC 3550 jitter and one-way latency.

    Prints a live line each second, then a table.

           parley load chat --url wss://HOST:PORT --secret-file FILE --users N --rate R/s [options]

    Chat users (one device each) on the signalling WebSocket: each
    authenticates and syncs, then they send 1:1 messages (and, with
    --groups, half of them to groups) at R per second in total for
    --duration; --offline P% of them go offline for the middle third and
    must get everything on their return. Measures send -> `sent` ack and
    send -> delivered latency, throughput, undelivered and repeated messages,
    and how late the generator sent against its schedule (send lag).
    Chat options (besides --url, --secret-file, --token-file, --insecure,
    --fingerprint, --bind, --loops, --duration, --ramp, --json, --html,
    --quiet):
      --users N                 users (default 100)
      --rate R/s                messages per second over all users (default 100/s)
      --groups GxM              G groups of M members each (default none)
      --offline PCT             users offline from 1/3 to 2/3 of the run (default 0%)
      --text-bytes N            bytes of each message's text (default 64)
      --max-loss PCT            fail when more than PCT of the expected deliveries did not arrive
      --max-p99 D               fail when the send -> delivered p99 is over D

    Options:
      --url URL                 wss://HOST:PORT (ws:// against serve --insecure)
      --rooms N                 rooms (default 1)
      --per-room N              participants per room (default 2)
      --publishers-per-room N   the first N of each room publish (default: all)
      --duration D              media time after the last participant started (default 10s)
      --ramp D                  start participants evenly over D (default 0)
      --audio opus|none         audio track (default opus); --no-audio is --audio none
      --video RATE@FPS          video track, e.g. 1.5mbps@30 (default none)
      --keyframe-interval D     video keyframe interval (default 2s; after --video)
      --suite CM|GCM            SRTP suite (AES_CM_128_HMAC_SHA1_80 or AEAD_AES_128_GCM; default CM)
      --secret-file FILE        the server's DATA-DIR/secret: mint a token per participant
      --token-file FILE         or take tokens from FILE, one per line (one per participant)
      --insecure                accept the server's certificate without checking it
      --fingerprint SHA256      accept only a server certificate with this fingerprint
      --bind IP[,IP...]         local addresses to spread participants over (e.g. 127.0.0.2,127.0.0.3)
      --loops N                 event loops (threads) of the generator (default 1)
      --media-via IP:PORT       send media there instead of to the relay's address (a proxy on the path)
      --room-prefix P           rooms are P-0, P-1, ... (default load)
      --max-loss PCT            fail (exit 1) when loss is over PCT (e.g. 0.5%)
      --max-p99 D               fail when the one-way latency p99 is over D (e.g. 20ms)
      --max-join D              fail when the join time p99 (connect -> first media) is over D,
                                or a receiving participant never got media
      --json FILE               write the report as JSON
      --html FILE               write the report as one self-contained HTML page (inline SVG charts)
      --quiet                   no live lines
      --scenario FILE           take the mode and options from a scenario file (tools/load/*.json);
                                flags on the command line win
      --find-capacity           grow the run step by step (rooms doubled from --rooms, then
                                bisected) until a threshold breaks (default --max-loss 1% --max-p99 50ms);
                                report the largest count that held and the server's CPU-seconds per
                                participant-second from its /metrics
      --capacity-max-rooms N    the most rooms --find-capacity tries (default 1024)

    Exit codes: 0 the run passed its thresholds, 1 a threshold failed (or
    nobody could join), 2 usage error.

    """

    static func main(_ argv: [String]) -> Int32 {
        if argv.first == "--scenario" || argv.first?.hasPrefix("--scenario=") == true {
            // The scenario names the mode.
            let path = argv.first == "--scenario" ? (argv.count > 1 ? argv[1] : "") : String(argv[0].dropFirst(11))
            let scenario: Scenario
            do { scenario = try Scenario(path: path) } catch {
                printError("parley load: \(error)")
                return ExitCode.usage
            }
            return main([scenario.mode] + argv)
        }
        guard let mode = argv.first, !mode.hasPrefix("-") else {
            if argv.contains("--help") || argv.contains("-h") { print(help, terminator: ""); return ExitCode.ok }
            printError("parley load: say media\n\n\(help)", terminator: "")
            return ExitCode.usage
        }
        switch mode {
        case "media": return media(Array(argv.dropFirst()))
        case "chat": return chat(Array(argv.dropFirst()))
        case "mixed": return mixed(Array(argv.dropFirst()))
        default:
            printError("parley load: unknown mode '\(mode)'\n\n\(help)", terminator: "")
            return ExitCode.usage
        }
    }

    static func media(_ argv: [String]) -> Int32 {
        let args: Arguments
        do {
            args = try Arguments(argv, options: MediaLoadOptions.valueFlags.union(["json", "html", "scenario", "capacity-max-rooms"]),
                                 flags: MediaLoadOptions.switchFlags.union(["quiet", "find-capacity"]))
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
        var maxRooms = 1024
        do {
            var values: [String: String] = [:]
            if let path = args["scenario"] {
                let scenario = try Scenario(path: path)
                guard scenario.mode == "media" else { throw LoadArgumentError.bad("scenario \(path) is for mode \(scenario.mode)") }
                values = scenario.options
            }
            for (k, v) in args.values where !["json", "html", "scenario", "capacity-max-rooms"].contains(k) { values[k] = v }
            for name in MediaLoadOptions.switchFlags where args.has(name) { values[name] = "" }
            // --video before --keyframe-interval, whatever order they came in.
            for name in ["video"] + values.keys.filter({ $0 != "video" }).sorted() {
                guard let v = values[name] else { continue }
                guard MediaLoadOptions.valueFlags.contains(name) || MediaLoadOptions.switchFlags.contains(name) else {
                    throw LoadArgumentError.bad("unknown option \(name)")
                }
                try o.apply(name, v)
            }
            if let m = args["capacity-max-rooms"] {
                guard let n = Int(m), n >= 1, n * o.perRoom <= MediaLoadOptions.maxParticipants else {
                    throw LoadArgumentError.bad("--capacity-max-rooms must be 1 or more (at most \(MediaLoadOptions.maxParticipants) participants)")
                }
                maxRooms = n
            }
            try o.validate()
        } catch {
            printError("parley load media: \(error)")
            return ExitCode.usage
        }
        let quiet = args.has("quiet")
        if args.has("find-capacity") { return findCapacity(o, maxRooms: maxRooms, json: args["json"], quiet: quiet) }
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

    static func chat(_ argv: [String]) -> Int32 {
        let args: Arguments
        do {
            args = try Arguments(argv, options: ChatLoadOptions.valueFlags.union(["json", "html", "scenario"]),
                                 flags: ChatLoadOptions.switchFlags.union(["quiet"]))
        } catch {
            printError("parley load chat: \(error)\n\n\(help)", terminator: "")
            return ExitCode.usage
        }
        if args.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
        var o = ChatLoadOptions()
        do {
            var values: [String: String] = [:]
            if let path = args["scenario"] {
                let scenario = try Scenario(path: path)
                guard scenario.mode == "chat" else { throw LoadArgumentError.bad("scenario \(path) is for mode \(scenario.mode)") }
                values = scenario.options
            }
            for (k, v) in args.values where !["json", "html", "scenario"].contains(k) { values[k] = v }
            for name in ChatLoadOptions.switchFlags where args.has(name) { values[name] = "" }
            for name in values.keys.sorted() { try o.apply(name, values[name]!) }
            try o.validate()
        } catch {
            printError("parley load chat: \(error)")
            return ExitCode.usage
        }
        let quiet = args.has("quiet")
        let report: ChatLoadReport
        do {
            report = try ChatLoad.run(o) { line in if !quiet { printError(line) } }
        } catch {
            printError("parley load chat: \(error)")
            return ExitCode.failure
        }
        print(report.table, terminator: "")
        if let path = args["json"], !write(report.json.serialized + "\n", to: path) { return ExitCode.failure }
        if let path = args["html"], !write(report.html, to: path) { return ExitCode.failure }
        return report.passed ? ExitCode.ok : ExitCode.failure
    }

    /// Mode `mixed` (a scenario only): its media and chat runs at once, the
    /// command line's connection flags going to both.
    static func mixed(_ argv: [String]) -> Int32 {
        let shared: Set<String> = ["url", "secret-file", "fingerprint", "loops"]
        let args: Arguments
        do {
            args = try Arguments(argv, options: shared.union(["json", "scenario"]), flags: ["insecure", "quiet"])
        } catch {
            printError("parley load mixed: \(error)")
            return ExitCode.usage
        }
        if args.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
        var media = MediaLoadOptions()
        var chat = ChatLoadOptions()
        do {
            guard let path = args["scenario"] else { throw LoadArgumentError.bad("mode mixed comes from a scenario file (--scenario)") }
            let scenario = try Scenario(path: path)
            var m = scenario.media, c = scenario.chat
            for (k, v) in args.values where shared.contains(k) { m[k] = v; c[k] = v }
            if args.has("insecure") { m["insecure"] = ""; c["insecure"] = "" }
            for name in ["video"] + m.keys.filter({ $0 != "video" }).sorted() { if let v = m[name] { try media.apply(name, v) } }
            for name in c.keys.sorted() { try chat.apply(name, c[name]!) }
            try media.validate()
            try chat.validate()
        } catch {
            printError("parley load mixed: \(error)")
            return ExitCode.usage
        }
        let quiet = args.has("quiet")
        let chatResult = Mutex<Result<ChatLoadReport, any Error>?>(nil)
        let chatOptions = chat
        let thread = Thread { chatResult.withLock { $0 = Result { try ChatLoad.run(chatOptions) { if !quiet { printError("chat  " + $0) } } } } }
        thread.start()
        let mediaResult = Result { try MediaLoad.run(media) { if !quiet { printError("media " + $0) } } }
        while chatResult.withLock({ $0 == nil }) { usleep(50_000) }
        do {
            let m = try mediaResult.get()
            let c = try chatResult.withLock { $0! }.get()
            print("== media\n" + m.table + "== chat\n" + c.table, terminator: "")
            if let path = args["json"], !write(JSONValue.object(["media": m.json, "chat": c.json]).serialized + "\n", to: path) {
                return ExitCode.failure
            }
            return m.passed && c.passed ? ExitCode.ok : ExitCode.failure
        } catch {
            printError("parley load mixed: \(error)")
            return ExitCode.failure
        }
    }

    static func findCapacity(_ o: MediaLoadOptions, maxRooms: Int, json: String?, quiet: Bool) -> Int32 {
        let result: CapacitySearch.Result
        do {
            result = try CapacitySearch.run(o, maxRooms: maxRooms) { line in if !quiet { printError(line) } }
        } catch {
            printError("parley load media: \(error)")
            return ExitCode.failure
        }
        print(result.table, terminator: "")
        if let path = json, !write(result.json.serialized + "\n", to: path) { return ExitCode.failure }
        return result.best == nil ? ExitCode.failure : ExitCode.ok
    }

    static func write(_ text: String, to path: String) -> Bool {
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            printError("parley load media: cannot write \(path): \(error)")
            return false
        }
        return true
    }
}
