import XCTest
import Foundation
import ParleyCore
import ParleyIO
import ParleySRTP
import ParleySTUN
import ParleyHTTP
import ParleyRelay
import ParleyTranscode
@testable import ParleyServer
@testable import ParleySignalling
@testable import ParleyProtocol
@testable import ParleyAuth
import ParleyTestSupport

let quietLogger = Logger(label: "test", level: .error)

extension SignallingService {
    /// Runs `body` on the signalling thread and waits for its result. Tests
    /// only: nothing in the server waits for the signalling thread.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (SignallingCore, CallService) -> T) -> T {
        try! loop.submit { body(self.core, self.calls) }
    }
}

/// A media peer for tests: a real blocking UDP socket on 127.0.0.1 that
/// speaks SRTP with the keys from a join reply; or, when the reply's
/// `media.protocol` is `tcp`, a TCP connection to the relay's TCP media port
/// carrying every packet RFC 4571-framed.
final class MediaPeer {
    let fd: Int32
    /// Media over TCP (RFC 4571) instead of UDP.
    let tcp: Bool
    let relay: SocketAddress
    let sender: SRTPContext
    let receiver: SRTPContext
    var seq: UInt16 = 100
    /// The credentials the relay's consent checks carry (join reply `ice.consentUfrag`/`consentPwd`).
    let consentUfrag: [UInt8]
    let consentKey: [UInt8]

    /// `join` is the join reply (or the `join` field of a resumed auth reply);
    /// `endpoint` one of its `media.candidates` to use instead of `media`.
    init(join: JSONValue, endpoint: JSONValue? = nil) throws {
        let media = endpoint ?? join["media"]!
        let suite = SRTPSuite(sdesName: join["srtp"]?["suite"]?.stringValue ?? "") ?? .default
        sender = try SRTPContext(material: SRTPKeyMaterial(suite: suite, inlineKeyParams: join["srtp"]!["send"]!.stringValue!),
                                 direction: .outbound)
        receiver = try SRTPContext(material: SRTPKeyMaterial(suite: suite, inlineKeyParams: join["srtp"]!["receive"]!.stringValue!),
                                   direction: .inbound)
        relay = SocketAddress(ip: media["host"]!.stringValue!, port: UInt16(media["port"]!.intValue!))!
        consentUfrag = Array((join["ice"]?["consentUfrag"]?.stringValue ?? "").utf8)
        consentKey = Array((join["ice"]?["consentPwd"]?.stringValue ?? "").utf8)
        tcp = media["protocol"]?.stringValue == "tcp"
        if tcp {
            fd = try XCTUnwrap(connectTCP(ip: media["host"]!.stringValue!, port: relay.port), "connect to the TCP media port")
            return
        }
        fd = socket(relay.family == .ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(fd >= 0)
        let any = relay.family == .ipv6 ? SocketAddress("[::1]:0")! : SocketAddress("127.0.0.1:0")!
        precondition(any.withSockAddr { Glibc.bind(fd, $0, $1) } == 0)
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        if tcp { sendFrame(fd, bytes); return }
        let n = bytes.withUnsafeBytes { b in relay.withSockAddr { sendto(fd, b.baseAddress, b.count, 0, $0, $1) } }
        precondition(n == bytes.count)
    }

    /// The next datagram, or nil after `timeout` (a hang guard: callers wait for what must arrive, or drain).
    func receive(timeout: Double = 10) -> [UInt8]? {
        tcp ? receiveFrame(fd, timeout: timeout) : receiveDatagram(fd, timeout: timeout)
    }

    /// Next RTP (not RTCP, not STUN) datagram, decrypted; nil on timeout.
    func receiveRTP(timeout: Double = 10) throws -> [UInt8]? {
        while let d = receive(timeout: timeout) {
            guard d.count >= 12, d[0] >> 6 == 2, !(192...223).contains(d[1]) else { continue }
            return try receiver.unprotect(d)
        }
        return nil
    }

    /// A STUN Binding with the ICE credentials of the join; returns whether it succeeded.
    func bind(ufrag: String, password: String) -> Bool {
        send(try! BindingCheck.request(username: Array("\(ufrag):peer".utf8), key: Array(password.utf8)))
        while let d = receive(), d.count >= 20 {
            if answerConsentCheck(d) { continue }              // the relay's check comes first
            if let reply = d.withUnsafeBytes(BindingCheck.reply) { return reply == .success }
        }
        return false
    }

    /// If `d` is the relay's consent check, answers it and returns true.
    func answerConsentCheck(_ d: [UInt8]) -> Bool {
        var out = [UInt8](repeating: 0, count: 512)
        let n = d.withUnsafeBytes { b in
            out.withUnsafeMutableBytes { o in
                BindingCheck.answer(b, from: STUNAddress(relay), ufrag: consentUfrag, key: consentKey, into: o)
            }
        }
        guard let n else { return false }
        send(Array(out[0..<n]))
        return true
    }

    /// An RTP packet with a payload unique to (ssrc, seq), protected with the send key.
    func rtp(ssrc: UInt32, seq: UInt16, payloadType: UInt8 = 111, size: Int = 160) throws -> (plain: [UInt8], srtp: [UInt8]) {
        let b = MediaPeer.plainRTP(ssrc: ssrc, seq: seq, payloadType: payloadType, size: size)
        return (b, try sender.protect(b))
    }

    static func plainRTP(ssrc: UInt32, seq: UInt16, payloadType: UInt8 = 111, size: Int = 160) -> [UInt8] {
        var b: [UInt8] = [0x80, payloadType, UInt8(seq >> 8), UInt8(seq & 0xff)]
        let ts = UInt32(seq) &* 960
        for v in [ts, ssrc] { b += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        b += (0..<size).map { UInt8(truncatingIfNeeded: Int(ssrc) &* 31 &+ Int(seq) &* 7 &+ $0) }
        return b
    }

    /// Sends the next packet on `ssrc`; returns its plaintext.
    @discardableResult
    func sendNext(ssrc: UInt32) throws -> [UInt8] {
        seq &+= 1
        let p = try rtp(ssrc: ssrc, seq: seq)
        send(p.srtp)
        return p.plain
    }
}

/// The daemon's front end and relay in-process on loopback (port 0), as
/// `parley serve --insecure` runs them.
final class RelayServerFixture {
    let group: EventLoopGroup
    let relay: Relay
    let front: ServerFrontEnd
    let secret: [UInt8]
    let dataDir: String

    let tls: Bool

    /// With `recording`, the recorder on the relay's tap (DATA-DIR/recordings) and its blocking pool.
    private(set) var recording: RoomRecorder?
    private var pool: BlockingPool?

    /// `tcp`: the relay also has a TCP media port per loop (RFC 4571), with these bounds.
    init(loops: Int = 2, grace: Int = 30, tls: Bool = false, participantTimeout: Duration = .seconds(30),
         recording record: Bool = false, tcp: RelayTCPConfig? = nil, mediaHost: SocketAddress = .ipv4Loopback(port: 0),
         configure: (inout ServerConfig) -> Void = { _ in }) throws {
        self.tls = tls
        group = try EventLoopGroup(numberOfThreads: loops, logger: quietLogger)
        let sink = RelayEventSink()
        var rc = RelayConfig()
        rc.onEvent = sink.deliver
        rc.participantTimeout = participantTimeout
        rc.housekeepingInterval = .milliseconds(200)
        if let tcp { rc.tcp = tcp }
        relay = try Relay(loops: group.loops, mediaAddresses: group.loops.map { _ in mediaHost },
                          tcpAddresses: tcp != nil ? group.loops.map { _ in mediaHost } : nil, config: rc)
        var config = ServerConfig()
        config.listen = .init(host: "127.0.0.1", port: 0)
        config.insecure = !tls
        config.reconnectGraceSeconds = grace
        dataDir = tempDir("server")
        config.dataDir = dataDir
        config.logLevel = .error
        configure(&config)
        if record {
            let pool = BlockingPool(threads: 2)
            self.pool = pool
            recording = RoomRecorder(directory: dataDir + "/recordings", limits: config.recordingLimits,
                                     maxRunning: config.recordMaxRunning, export: config.recordExport, exportOptions: config.exportOptions,
                                     jobs: try SQLiteJobQueue.open(dataDir: dataDir), relay: relay, pool: pool,
                                     loop: group.loops[0], logger: quietLogger)
        }
        front = try ServerFrontEnd.start(group: group, config: config, relay: relay, events: sink, recording: recording,
                                         logger: quietLogger)
        secret = try ServerSecret.loadOrCreate(dataDir: dataDir)
    }

    /// Waits until the relay has latched each named participant of `room`
    /// (its consent check answered), so media sent next reaches every one of
    /// them: a peer's answer over TCP and another's packet over UDP can be
    /// read in either order by the loop. The timeout is only a hang guard.
    func waitUntilLatched(_ names: [String], room: String = "call", file: StaticString = #filePath, line: UInt = #line) {
        waitUntil("\(names) latched", file: file, line: line) {
            guard let s = try? relay.statsSync(room: room) else { return false }
            return names.allSatisfy { n in s.participants.contains { $0.name == n && $0.address != nil } }
        }
    }

    func stop() {
        front.stop()
        relay.shutdown()
        group.syncShutdownGracefully()
        recording?.shutdown()
        pool?.shutdown()
    }

    var wsURL: String { "\(tls ? "wss" : "ws")://127.0.0.1:\(front.address.port)/ws" }
    var httpURL: String { "\(tls ? "https" : "http")://127.0.0.1:\(front.address.port)" }
    var certificateFile: String { dataDir + "/tls/cert.pem" }

    func token(_ sub: String, room: String? = "call", publish: Bool = true, record: Bool = false, admin: Bool = false) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return JWT.sign(TokenClaims(subject: sub, room: room, issuedAt: now, expiresAt: now + 600, canPublish: publish,
                                    canRecord: record, isAdmin: admin), secret: secret)
    }

    func connect() throws -> BlockingSignallingClient {
        try BlockingSignallingClient.connect(loop: group.next(), address: front.address, host: "127.0.0.1", tls: clientTLS())
    }

    /// What a client needs for this server: nil over ws://, a context that trusts its certificate over wss://.
    func clientTLS() throws -> TLSContext? {
        tls ? try TLSContext.client(trustedCertificatesFile: certificateFile) : nil
    }

    func srtpDrops(_ reason: String) -> Int {
        MetricsRegistry.shared.counter("parley_srtp_dropped_total", help: "", labels: [("reason", reason)]).current
    }
}

/// Starts ffmpeg publishing an Opus sine tone (payload type 111) as SRTP
/// with the SSRC, key and port `parley sdp` gave `session` (paced in real
/// time, `-re`). The caller terminates it.
func startFFmpegOpusTone(_ session: SDPSession, hertz: Int, seconds: Int) throws -> Process {
    let sdp = session.sdp
    let ssrc = try XCTUnwrap(session.track?["ssrc"]?.intValue)
    let cryptoLine = try XCTUnwrap(sdp.split(separator: "\r\n").first { $0.hasPrefix("a=crypto:") })
    let (_, material) = try SRTPKeyMaterial.parse(cryptoAttribute: String(cryptoLine))
    let port = try XCTUnwrap(sdp.split(separator: "\r\n").first { $0.hasPrefix("m=audio ") }?.split(separator: " ")[1])
    let ffmpeg = Process()
    ffmpeg.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
    ffmpeg.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                        "-f", "lavfi", "-i", "sine=frequency=\(hertz):sample_rate=48000:duration=\(seconds)",
                        "-c:a", "libopus", "-b:a", "64k", "-payload_type", "111", "-ssrc", String(ssrc),
                        "-f", "rtp", "-srtp_out_suite", material.suite.sdesName,
                        "-srtp_out_params", String(material.inlineKeyParams.dropFirst("inline:".count)),
                        "srtp://127.0.0.1:\(port)?rtcpport=\(port)"]
    ffmpeg.standardError = FileHandle.nullDevice
    ffmpeg.standardOutput = FileHandle.nullDevice
    try ffmpeg.run()
    return ffmpeg
}

/// A relay server with `dev` (the demo page's /dev/token) for Playwright-driven
/// Chromium tests; skips unless Debian's chromium and Playwright are installed.
func chromiumFixture(recording: Bool = false, configure: (inout ServerConfig) -> Void = { _ in }) throws -> RelayServerFixture {
    try XCTSkipIf(!FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "chromium is not installed (tools/setup)")
    let probe = try runTool("python3", ["-c", "import playwright.sync_api"])
    try XCTSkipIf(probe.status != 0, "playwright is not installed (tools/setup)")
    return try RelayServerFixture(recording: recording, configure: { $0.dev = true; configure(&$0) })
}

/// Runs a tools/interop browser script against `fx` and returns its summary (its last output line, JSON); fails unless it exits 0.
func runBrowserScript(_ script: String, _ fx: RelayServerFixture, _ args: [String], timeout: Double = 150,
                      file: StaticString = #filePath, line: UInt = #line) throws -> JSONValue {
    let r = try runTool("python3", [repositoryPath(script), fx.httpURL] + args, timeout: timeout)
    let last = r.out.split(separator: "\n").last.map(String.init) ?? ""
    let result = try XCTUnwrap(try? JSONValue.parse(last), "no summary: \(r.out)\n\(r.err)", file: file, line: line)
    XCTAssertEqual(r.status, 0, "\(last)\n\(r.err)", file: file, line: line)
    return result
}

/// Each of a browser_call.py run's `n` pages decodes the video of every
/// other one, in its own tile beside the page's own, none left empty by
/// renegotiation.
func assertEachPageShowsTheOthers(_ result: JSONValue, pages n: Int, file: StaticString = #filePath, line: UInt = #line) {
    let pages = result["pages"]?.arrayValue ?? []
    XCTAssertEqual(pages.count, n, file: file, line: line)
    for page in pages {
        XCTAssertEqual(page["last"]?["videoStreamsDecoding"]?.intValue, n - 1, "\(page)", file: file, line: line)
        XCTAssertEqual(page["last"]?["tiles"]?.intValue, n, "\(page)", file: file, line: line)
        XCTAssertEqual(page["last"]?["emptyTiles"]?.intValue, 0, "\(page)", file: file, line: line)
        XCTAssertGreaterThan(page["last"]?["video"]?["framesDecoded"]?.intValue ?? 0,
                             page["first"]?["video"]?["framesDecoded"]?.intValue ?? 0, "\(page)", file: file, line: line)
    }
}

extension Relay {
    /// `stats`, waited for (tests only).
    func statsSync(room: String) throws -> RoomStats { try waitFor { stats(room: room, completion: $0) } }
}
