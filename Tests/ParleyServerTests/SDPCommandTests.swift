import Foundation
import XCTest
import ParleyTestSupport
import ParleyIO

/// `parley sdp` as a user runs it, against a real `parley serve`: the
/// certificate pin, what it prints for ffmpeg, and leaving on Ctrl-C.
final class SDPCommandTests: XCTestCase {

    func token(_ user: String, dataDir: String, _ grants: [String] = []) throws -> String {
        let r = try runTool(parleyBinary, ["token", "--user", user, "--room", "call", "--data-dir", dataDir] + grants)
        XCTAssertEqual(r.status, 0, r.err)
        return r.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func metric(_ name: String, port: Int) throws -> String? {
        let r = try runTool("curl", ["-sk", "https://127.0.0.1:\(port)/metrics"])
        return r.out.split(separator: "\n").first { $0.hasPrefix(name + " ") }.map { String($0.split(separator: " ")[1]) }
    }

    /// Finding 7: the pin was checked on a separate TLS connection, and the
    /// session's own connection accepted any certificate. A proxy that sends
    /// the first connection to the real daemon and later ones to an impostor
    /// (its own self-signed certificate) got the session: the WebSocket
    /// request and then the token. Now the pinned connection is the session,
    /// and a mismatch ends it before a byte of it is sent.
    func testFingerprintIsPinnedOnTheConnectionThatCarriesTheSession() throws {
        let dir = tempDir("pin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (serve, lines, _) = try startServe(dataDir: dir, insecure: false)
        defer { kill(serve.processIdentifier, SIGTERM); serve.waitUntilExit() }
        let daemonPort = try XCTUnwrap(lines.first { $0.hasPrefix("listening https ") }.flatMap { Int($0.split(separator: ":").last!) })
        let pin = try XCTUnwrap(lines.first { $0.hasPrefix("tls certificate ") }?.split(separator: " ").last.map(String.init))
        let impostor = try RecordingTLSServer(directory: dir + "/impostor")
        defer { impostor.stop() }
        let tok = try token("ffmpeg", dataDir: dir, ["--can-publish"])
        func sdp(_ port: Int, pin: String) throws -> (status: Int32, out: String, err: String) {
            try runTool(parleyBinary, ["sdp", "--server", "wss://127.0.0.1:\(port)", "--token", tok, "--fingerprint", pin], timeout: 30)
        }

        // The impostor answers first: its certificate is not the pinned one, and nothing is sent.
        let impostorFirst = try SwitchingProxy(targets: [impostor.port, daemonPort])
        defer { impostorFirst.stop() }
        var r = try sdp(impostorFirst.port, pin: pin)
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
        XCTAssertTrue(r.err.hasPrefix("parley sdp: 127.0.0.1:\(impostorFirst.port): tls: server certificate sha256 \(impostor.fingerprint) is not the pinned \(pin)"), r.err)
        XCTAssertEqual(r.out, "")
        XCTAssertEqual(impostor.connections, 1, "the impostor was reached (and showed its certificate)")
        XCTAssertEqual(impostor.received, 0, "not a byte of the session reached the impostor")
        XCTAssertEqual(try metric("parley_http_websocket_upgrades_total", port: daemonPort), "0")

        // The daemon answers first, the impostor after: the session stays on the pinned connection.
        let daemonFirst = try SwitchingProxy(targets: [daemonPort, impostor.port])
        defer { daemonFirst.stop() }
        r = try sdp(daemonFirst.port, pin: pin.lowercased().replacingOccurrences(of: ":", with: ""))
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), r.out)
        XCTAssertEqual(impostor.received, 0, "the session went to the impostor")
        XCTAssertEqual(impostor.connections, 1)
        XCTAssertEqual(daemonFirst.accepted, 1, "one connection: the pinned one carries the session")
        XCTAssertEqual(try metric("parley_signalling_joins_total", port: daemonPort), "1")

        // A pin that is not a SHA-256 is refused before connecting.
        r = try sdp(daemonPort, pin: "AB:CD")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.err, "parley sdp: TLS: a SHA-256 fingerprint is 64 hex digits (colons optional), got \"AB:CD\"\n")
    }

    /// Publish mode prints the track id `--receive` needs and a working
    /// ffmpeg command; receive mode prints the ffmpeg command that receives
    /// (run here as printed: it records the tone the first one publishes);
    /// SIGINT on `--hold` leaves the room at once, though the reconnect grace
    /// period would keep a dropped participant for two minutes.
    func testPublishPrintsTrackIDReceivePrintsFFmpegCommandAndHoldLeavesOnSIGINT() throws {
        try XCTSkipIf(!FileManager.default.isExecutableFile(atPath: "/usr/bin/ffmpeg"), "ffmpeg is not installed (tools/setup)")
        let dir = tempDir("sdphold")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (serve, lines, _) = try startServe(dataDir: dir, extra: ["--reconnect-grace", "120"])
        defer { kill(serve.processIdentifier, SIGTERM); serve.waitUntilExit() }
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("listening http ") }.flatMap { Int($0.split(separator: ":").last!) })
        let server = "ws://127.0.0.1:\(port)/ws"
        let admin = try token("admin", dataDir: dir, ["--admin"])
        func rooms() throws -> String { try httpRequest(port, "GET", "/admin/rooms", headers: ["Authorization: Bearer \(admin)"]) }

        // Publisher, held.
        let held = Process()
        held.executableURL = URL(fileURLWithPath: parleyBinary)
        held.arguments = ["sdp", "--server", server, "--token", try token("pub", dataDir: dir, ["--can-publish"]), "--hold"]
        let heldErr = Pipe()
        held.standardError = heldErr
        held.standardOutput = FileHandle.nullDevice
        try held.run()
        var notes = ""
        while notes.filter({ $0 == "\n" }).count < 3 { // track, "publish with", the command
            let chunk = heldErr.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            notes += String(decoding: chunk, as: UTF8.self)
        }
        let noteLines = notes.split(separator: "\n").map(String.init)
        XCTAssertEqual(noteLines.count, 3, notes)
        let trackLine = try XCTUnwrap(noteLines.first { $0.hasPrefix("# track ") }, notes)
        let trackID = String(trackLine.split(separator: " ")[2])
        XCTAssertEqual(trackLine, "# track \(trackID) (others receive it with --receive \(trackID))")
        XCTAssertTrue(try rooms().contains(#""id":"\#(trackID)""#), "the printed id is the published track's")
        let publish = try XCTUnwrap(noteLines.last)
        XCTAssertTrue(publish.hasPrefix("ffmpeg -re -f lavfi -i sine="), publish)

        // Receiver: the SDP to a file, the command on stderr.
        let r = try runTool(parleyBinary, ["sdp", "--server", server, "--token", try token("viewer", dataDir: dir),
                                           "--receive", trackID, "--out", dir + "/recv.sdp"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out, "")
        let receive = "ffmpeg -protocol_whitelist file,udp,rtp,srtp -i \(dir)/recv.sdp -c copy received.mkv"
        XCTAssertEqual(r.err, "# receive with:\n\(receive)\n")
        XCTAssertTrue(try String(contentsOfFile: dir + "/recv.sdp", encoding: .utf8).contains("a=recvonly"))
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/recv.sdp")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600, "the SDP holds the SRTP key")

        // Both commands as printed, bounded in time (-t on the input) and quiet, the
        // recording written into the test's directory: the receiver records the publisher's tone.
        func argv(_ command: String, limit: String, output: String? = nil) -> [String] {
            var words = command.split(separator: " ").map { $0.replacingOccurrences(of: "'", with: "") }
            XCTAssertEqual(words.removeFirst(), "ffmpeg")
            if let output { words[words.count - 1] = output }
            return ["-loglevel", "error", "-nostdin", "-y", "-t", limit] + words
        }
        let sender = Process()
        sender.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
        sender.arguments = argv(publish, limit: "8")
        sender.standardOutput = FileHandle.nullDevice
        sender.standardError = FileHandle.nullDevice
        try sender.run()
        defer { if sender.isRunning { sender.terminate() }; sender.waitUntilExit() }
        let got = try runTool("/usr/bin/ffmpeg", argv(receive, limit: "2", output: dir + "/received.mkv"), timeout: 30)
        XCTAssertEqual(got.status, 0, got.err)
        let probe = try runTool("ffprobe", ["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", dir + "/received.mkv"])
        XCTAssertEqual(probe.out.trimmingCharacters(in: .whitespacesAndNewlines), "opus", probe.err)

        // Ctrl-C: leave now, not after the 120 s grace period.
        XCTAssertTrue(try rooms().contains(#""id":"pub""#))
        kill(held.processIdentifier, SIGINT)
        held.waitUntilExit()
        XCTAssertEqual(held.terminationReason, .exit)
        XCTAssertEqual(held.terminationStatus, 0)
        let deadline = Date().addingTimeInterval(10)
        while try rooms().contains(#""id":"pub""#), Date() < deadline { usleep(50_000) }
        let after = try rooms()
        XCTAssertFalse(after.contains(#""id":"pub""#), after)
        XCTAssertTrue(after.contains(#""id":"viewer""#), "a dropped connection (no --hold) stays for the grace period: \(after)")
    }
}

/// A TCP proxy on 127.0.0.1: its n-th accepted connection goes to
/// `targets[min(n, targets.count - 1)]`, bytes copied both ways.
final class SwitchingProxy: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var count = 0
    var accepted: Int { lock.withLock { count } }

    init(targets: [Int]) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        fd = listener
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, len) == 0 && listen(listener, 8) == 0 && getsockname(listener, $0, &len) == 0
            }
        }
        guard ok else { throw POSIXError(.EADDRINUSE) }
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return } // stop() closed the listener
                let n = lock.withLock { () -> Int in count += 1; return count - 1 }
                let upstream = Self.connectLoopback(targets[min(n, targets.count - 1)])
                Thread.detachNewThread { Self.splice(client, upstream) }
            }
        }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }

    static func connectLoopback(_ port: Int) -> Int32 {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return s
    }

    /// Copies both ways until either side closes, then closes both.
    static func splice(_ a: Int32, _ b: Int32) {
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 16384)
        loop: while poll(&fds, 2, 60_000) > 0 {
            for (i, p) in fds.enumerated() where p.revents != 0 {
                let n = read(p.fd, &buf, buf.count)
                if n <= 0 || write(fds[1 - i].fd, buf, n) != n { break loop }
            }
        }
        close(a)
        close(b)
    }
}

/// A TLS server with its own self-signed certificate that records what
/// reaches it: connections accepted and plaintext bytes.
final class RecordingTLSServer: @unchecked Sendable {
    final class Tally: @unchecked Sendable {
        let lock = NSLock()
        var connections = 0
        var bytes = 0
    }

    final class Recorder: TCPConnectionHandler {
        let tally: Tally
        init(_ t: Tally) {
            tally = t
            t.lock.withLock { t.connections += 1 }
        }
        func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
            tally.lock.withLock { tally.bytes += bytes.count }
        }
    }

    let group: EventLoopGroup
    let listener: TCPListener
    let fingerprint: String
    private let tally = Tally()
    var connections: Int { tally.lock.withLock { tally.connections } }
    var received: Int { tally.lock.withLock { tally.bytes } }
    var port: Int { Int(listener.localAddress.port) }

    init(directory: String) throws {
        let cert = try TLSCertificate.generateSelfSigned(directory: directory)
        fingerprint = cert.sha256Fingerprint
        let tls = try TLSContext.server(certificateChainFile: cert.certificateFile, privateKeyFile: cert.privateKeyFile)
        group = try EventLoopGroup(numberOfThreads: 1)
        let loop = group.loops[0], tally = self.tally
        listener = try loop.submit {
            try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0), tls: tls) { Recorder(tally) }
        }
    }

    func stop() {
        let l = listener
        try? group.loops[0].submit { l.close() }
        group.syncShutdownGracefully()
    }
}
