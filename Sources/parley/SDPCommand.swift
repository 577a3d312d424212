import Foundation
import ParleyCore
import ParleyIO
import ParleyProtocol

/// `parley sdp`: joins a room for ffmpeg/GStreamer and prints the SDP.
enum SDPCommand {
    static let help = """
    Usage: parley sdp --token T [options]

    Joins the room of token T on a running `parley serve` over the signalling
    WebSocket and prints an SDP (with a=crypto) for an external RTP tool.
    Publish mode (default): an Opus track is published; the SDP says where to
    send, with which SSRC and SRTP key. Its track id (what --receive takes) and
    an ffmpeg command line that publishes a tone are printed on stderr.
    Receive mode (--receive TRACK): the track is subscribed, a local UDP port
    is latched with STUN, and the SDP tells the tool to listen there; the
    ffmpeg command line that receives it is printed on stderr.

    Options:
      --token T                 access token (parley token)
      --server URL              wss://HOST:PORT (default wss://127.0.0.1:7700), ws:// with serve --insecure
      --insecure-skip-verify    accept the server's certificate without checking it
      --fingerprint SHA256      accept only a server certificate with this SHA-256 fingerprint
                                (checked on the session's connection before the token is sent)
      --receive TRACK           subscribe to TRACK (id from track_published) instead of publishing
      --no-publish              join without publishing
      --out FILE                write the SDP to FILE instead of stdout
      --hold                    stay in the room until SIGINT/SIGTERM, then leave it (otherwise the
                                session ends after the server's reconnect grace period)

    Exit codes: 0 done (or left the room on SIGINT/SIGTERM), 1 the session
    failed (connection, certificate pin, token, server error, or the server
    closed a held session), 2 usage error.

    """

    static func main(_ argv: [String]) -> Int32 {
        let args: Arguments
        do {
            args = try Arguments(argv, options: ["token", "server", "fingerprint", "receive", "out"],
                                 flags: ["insecure-skip-verify", "no-publish", "hold"])
        } catch {
            return fail("\(error)", ExitCode.usage)
        }
        if args.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
        guard let token = args["token"], args.positionals.isEmpty else {
            printError("parley sdp: --token is required\n\n\(help)", terminator: "")
            return ExitCode.usage
        }
        var o = SDPSession.Options()
        o.token = token
        if let s = args["server"] { o.server = s }
        o.insecureSkipVerify = args.has("insecure-skip-verify")
        o.fingerprint = args["fingerprint"]
        o.receiveTrack = args["receive"]
        o.publish = !args.has("no-publish")
        let hold = args.has("hold")
        // --hold waits for SIGINT/SIGTERM on this thread (sigwait), so they are
        // blocked before the loop thread starts: it inherits the mask.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        if hold { pthread_sigmask(SIG_BLOCK, &signals, nil) }
        let group: EventLoopGroup
        do { group = try EventLoopGroup(numberOfThreads: 1, logger: Logger(label: "parley.sdp", level: .warn)) } catch {
            return fail("\(error)")
        }
        defer { group.syncShutdownGracefully() }
        let session: SDPSession
        do { session = try SDPSession.open(loop: group.loops[0], o) } catch {
            return fail("\(error)")
        }
        if let out = args["out"] {
            // The SDP holds the SRTP key: owner-only, like the token.
            guard FileManager.default.createFile(atPath: out, contents: Data(session.sdp.utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                session.client.close(abort: true)
                return fail("cannot write \(out)")
            }
        } else {
            print(session.sdp, terminator: "")
        }
        var notes = ""
        if let hint = session.ffmpegHint {
            if o.receiveTrack != nil {
                let file = args["out"] ?? "SDP_FILE"
                notes += "# receive with\(args["out"] == nil ? " (the SDP above saved as SDP_FILE)" : ""):\n"
                notes += hint.replacingOccurrences(of: "SDP_FILE", with: file) + "\n"
            } else {
                if let id = session.track?["id"]?.stringValue { notes += "# track \(id) (others receive it with --receive \(id))\n" }
                notes += "# publish with:\n\(hint)\n"
            }
        }
        printError(notes, terminator: "")
        fflush(nil)
        guard hold else {
            // Drop the connection: the media session lives on for the server's grace period.
            session.client.close(abort: true)
            return ExitCode.ok
        }
        var wait = timespec(tv_sec: 1, tv_nsec: 0)
        while sigtimedwait(&signals, nil, &wait) < 0 {
            if session.client.isClosed { return fail("the server closed the session") }
        }
        session.leave()
        return ExitCode.ok
    }

    static func fail(_ message: String, _ code: Int32 = ExitCode.failure) -> Int32 {
        printError("parley sdp: \(message)")
        return code
    }
}
