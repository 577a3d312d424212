import ParleyRTP
import XCTest
import Foundation
import Glibc
import ParleyTestSupport
import ParleyCore
import ParleyHTTP
import ParleyIO
@testable import ParleyServer
@testable import ParleyWeb
@testable import ParleySignalling
@testable import ParleyProtocol

/// The front end's limits (issue #14, findings 4 and 5) against real
/// clients on loopback: a ClientHello trickled by CPython's ssl (OpenSSL),
/// slowloris heads, connection caps per source IP (127.0.0.x), WebSocket
/// members that never read, and a client flooding signalling requests.
final class FrontEndLimitsTests: XCTestCase {
    var group: EventLoopGroup!
    var servers: [HTTPServer] = []
    var services: [SignallingService] = []

    override func setUpWithError() throws {
        group = try EventLoopGroup(numberOfThreads: 2, logger: quietLogger)
    }

    override func tearDown() {
        servers.forEach { $0.stop() }
        services.forEach { $0.shutdown() }
        group.syncShutdownGracefully()
    }

    /// An HTTP server with `/healthz`, `/metrics` and, if given, signalling on `/ws`.
    func startServer(_ limits: HTTPServer.Limits, tls: TLSContext? = nil, signalling: SignallingService? = nil) throws -> SocketAddress {
        let router = HTTPRouter()
        BuiltinRoutes.install(on: router)
        signalling?.install(on: router)
        if let signalling { services.append(signalling) }
        let s = HTTPServer(group: group, router: router, tls: tls, limits: limits, logger: quietLogger)
        servers.append(s)
        return try s.start(at: SocketAddress("127.0.0.1:0")!)
    }

    func metric(_ name: String, _ labels: MetricLabels = []) -> Int {
        MetricsRegistry.shared.counter(name, help: "", labels: labels).current
    }

    /// Asserts that a counter grows by `delta` from `before` (waiting a
    /// while: the server counts a close as it reports it, which may be just
    /// after the client saw it).
    func assertCounted(_ name: String, _ labels: MetricLabels = [], from before: Int, by delta: Int,
                       file: StaticString = #filePath, line: UInt = #line) {
        let giveUp = Date().addingTimeInterval(10)
        while metric(name, labels) - before < delta && Date() < giveUp { usleep(10_000) }
        XCTAssertEqual(metric(name, labels) - before, delta, name, file: file, line: line)
    }

    func testConfigKeysSetTheFrontEndLimits() throws {
        var c = ServerConfig()
        XCTAssertEqual(c.httpLimits.maxQueuedBytes, 1 << 20)
        XCTAssertEqual(c.httpLimits.maxConnectionsPerIP, 100)
        for (k, v) in [("tls-handshake-timeout", "3"), ("request-head-timeout", "4"), ("max-queued-bytes", "131072"),
                       ("max-connections", "500"), ("max-connections-per-ip", "7"), ("signalling-rate", "20"), ("signalling-burst", "40")] {
            try c.set(k, v)
            XCTAssertTrue(ServerConfig.keys.contains { $0.key == k }, "\(k) is listed for --help")
        }
        let l = c.httpLimits
        XCTAssertEqual(l.tlsHandshakeTimeout, .seconds(3))
        XCTAssertEqual(l.requestHeadTimeout, .seconds(4))
        XCTAssertEqual(l.maxQueuedBytes, 131072)
        XCTAssertEqual(l.maxConnections, 500)
        XCTAssertEqual(l.maxConnectionsPerIP, 7)
        XCTAssertEqual(c.signallingRate, 20)
        XCTAssertEqual(c.signallingBurst, 40)
        XCTAssertThrowsError(try c.set("request-head-timeout", "0"))
        XCTAssertThrowsError(try c.set("max-queued-bytes", "1000"))
        XCTAssertEqual(c.tlsRecordLayer, .parley)
        try c.set("tls-record-layer", "openssl")
        XCTAssertEqual(c.tlsRecordLayer, .openssl)
        XCTAssertThrowsError(try c.set("tls-record-layer", "ktls"))
        XCTAssertTrue(ServerConfig.keys.contains { $0.key == "tls-record-layer" })
    }

    // MARK: Finding 5: deadlines

    func testTrickledClientHelloIsClosedByTheHandshakeDeadline() throws {
        let dir = tempDir("frontend-tls")
        let cert = try TLSCertificate.generateSelfSigned(directory: dir)
        var limits = HTTPServer.Limits()
        limits.tlsHandshakeTimeout = .seconds(1) // idle timeout stays 60 s: bytes keep resetting it
        let tls = try TLSContext.server(certificateChainFile: cert.certificateFile, privateKeyFile: cert.privateKeyFile)
        let address = try startServer(limits, tls: tls)
        let before = metric("parley_http_deadline_closed_total", [("deadline", "tls_handshake")])

        // A genuine OpenSSL ClientHello, sent one byte every 200 ms.
        let script = """
        import socket, ssl, sys, time
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        s.settimeout(0.2)
        sent, start = 0, time.monotonic()
        while time.monotonic() - start < 40:
            try:
                if sent < len(hello):
                    s.send(hello[sent:sent + 1])
                    sent += 1
                if not s.recv(4096):
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            print("open after", sent, "of", len(hello), "bytes")
            sys.exit(1)
        print("closed after", sent, "of", len(hello), "bytes")
        """
        let path = dir + "/trickle.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try runTool("python3", [path, String(address.port)], timeout: 90)
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let words = r.out.split(separator: " ")
        XCTAssertEqual(words.first, "closed", r.out)
        if words.count >= 5, let sent = Int(words[2]), let total = Int(words[4]) {
            XCTAssertLessThan(sent, total, "the server closed before the ClientHello was complete")
        }
        assertCounted("parley_http_deadline_closed_total", [("deadline", "tls_handshake")], from: before, by: 1)

        // A client that does not dawdle still gets through.
        let ok = try runTool("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cert.certificateFile,
                                      "https://localhost:\(address.port)/healthz"])
        XCTAssertEqual(ok.out, "200", ok.err)
    }

    func testSlowlorisHeadsAreClosedByTheRequestHeadDeadline() throws {
        var limits = HTTPServer.Limits()
        limits.requestHeadTimeout = .seconds(1)
        let address = try startServer(limits)
        let before = metric("parley_http_deadline_closed_total", [("deadline", "request_head")])

        // Ten fresh connections, and ten that were served once and then
        // trickle the next request on the kept-alive connection.
        var clients: [RawClient] = []
        for i in 0..<20 {
            let c = RawClient(to: address)
            if i >= 10 {
                c.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                XCTAssertTrue(c.readUntil("{\"status\":\"ok\"}"), "keep-alive request \(i) served")
            }
            c.send("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            clients.append(c)
        }
        // One more header byte to every connection every 200 ms, as long as it stays open.
        var replies = Array(repeating: [UInt8](), count: clients.count)
        var closed = Array(repeating: false, count: clients.count)
        let giveUp = Date().addingTimeInterval(40) // hang guard; the idle timeout (60 s) never fires
        while closed.contains(false) && Date() < giveUp {
            for (i, c) in clients.enumerated() where !closed[i] {
                c.send("a")
                switch c.readAvailable() {
                case .data(let b): replies[i] += b
                case .closed: closed[i] = true
                case .nothing: break
                }
            }
            usleep(200_000)
        }
        XCTAssertEqual(closed.filter { $0 }.count, clients.count, "every slowloris connection was closed")
        for (i, r) in replies.enumerated() {
            let text = String(decoding: r, as: UTF8.self)
            XCTAssertTrue(text.hasPrefix("HTTP/1.1 408") || (i >= 10 && text.contains("HTTP/1.1 408")), "connection \(i): \(text)")
        }
        assertCounted("parley_http_deadline_closed_total", [("deadline", "request_head")], from: before, by: clients.count)
    }

    func testConnectionCapsRefuseAtOnceAndReleaseOnClose() throws {
        var limits = HTTPServer.Limits()
        limits.maxConnectionsPerIP = 3
        limits.maxConnections = 4
        let address = try startServer(limits)
        let perIPBefore = metric("parley_http_connections_refused_total", [("reason", "max_connections_per_ip")])
        let totalBefore = metric("parley_http_connections_refused_total", [("reason", "max_connections")])

        func served(_ c: RawClient) -> Bool {
            c.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            return c.readUntil("{\"status\":\"ok\"}")
        }
        let first = (0..<3).map { _ in RawClient(to: address) }
        for c in first { XCTAssertTrue(served(c), "within the per-IP cap") }

        // The fourth from 127.0.0.1 is closed at once, before it sends anything.
        let fourth = RawClient(to: address)
        XCTAssertEqual(fourth.readToEnd().bytes, [], "refused without a response")
        XCTAssertTrue(fourth.readToEnd().closed)
        assertCounted("parley_http_connections_refused_total", [("reason", "max_connections_per_ip")], from: perIPBefore, by: 1)

        // Another source address has its own count, up to the overall cap.
        let other = RawClient(to: address, from: "127.0.0.2")
        XCTAssertTrue(served(other), "another IP is not limited by 127.0.0.1's count")
        let fifth = RawClient(to: address, from: "127.0.0.3")
        XCTAssertTrue(fifth.readToEnd().closed, "over the overall cap")
        assertCounted("parley_http_connections_refused_total", [("reason", "max_connections")], from: totalBefore, by: 1)

        // Closing one releases its place: a new connection from 127.0.0.1 is served.
        first[0].close()
        var again: RawClient?
        let giveUp = Date().addingTimeInterval(30) // hang guard
        while again == nil && Date() < giveUp {
            let c = RawClient(to: address)
            if served(c) { again = c } else { usleep(50_000) }
        }
        XCTAssertNotNil(again, "the per-IP count was released when a connection closed")
        XCTAssertEqual(servers[0].counts.total, 4, "127.0.0.1 twice from the first three, the new one, 127.0.0.2")
    }

    // MARK: Finding 4: slow consumers and request floods

    func testMembersThatNeverReadAreClosedAtTheQueuedBytesCap() throws {
        let service = try SignallingService(backend: SignallingCoreTests.Backend(), verifier: SignallingCoreTests.Verifier(),
                                        requestRate: 1_000_000, requestBurst: 1_000_000, logger: quietLogger)
        var limits = HTTPServer.Limits()
        limits.maxQueuedBytes = 64 << 10
        let address = try startServer(limits, signalling: service)
        let before = metric("parley_http_slow_consumer_closed_total")

        // Five members join and then never read again (4 KiB receive buffers).
        let silent = try (0..<5).map { i -> RawClient in
            let c = RawClient(to: address, receiveBuffer: 4096)
            try c.openWebSocket(auth: "silent\(i)@room")
            return c
        }
        let reader = try BlockingSignallingClient.connect(loop: group.next(), address: address, host: "127.0.0.1")
        try reader.call(.auth(token: "reader@room", room: nil))
        try reader.call(.join(room: nil, publish: false, subscribe: true, suite: nil))
        let publisher = try BlockingSignallingClient.connect(loop: group.next(), address: address, host: "127.0.0.1")
        try publisher.call(.auth(token: "pub@room", room: nil))
        try publisher.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        let track = try publisher.call(.publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)]))
        let trackID = try XCTUnwrap(track["tracks"]?.arrayValue?.first?["id"]?.stringValue)

        // The publisher toggles mute; every toggle is an event to every
        // member. It goes on until this server has closed every silent
        // member: its own connection count says so, where the counter is
        // process-wide (a server of another test may count a close too).
        var toggles = 0
        let giveUp = Date().addingTimeInterval(120) // hang guard
        func connections() -> Int { service.onLoop { core, _ in core.connectionCount } }
        while connections() > 2 && Date() < giveUp {
            for _ in 0..<500 {
                toggles += 1
                publisher.send(ClientMessage(id: .string("m\(toggles)"), request: .mute(track: trackID, muted: toggles % 2 == 1)).encoded)
            }
            try publisher.call(.ping, timeout: 30) // the queue has worked through the batch
            _ = publisher.takeQueued()
        }
        XCTAssertEqual(connections(), 2, "every silent member was closed")
        XCTAssertGreaterThanOrEqual(metric("parley_http_slow_consumer_closed_total") - before, silent.count)

        // Each silent member's connection ends. What it finally reads is all
        // the server held for it: the kernel's send buffer (at most
        // tcp_wmem's maximum) plus our queue, bounded by the cap; and it ends
        // with close 4009 if the member reads in time.
        let wmem = try String(contentsOfFile: "/proc/sys/net/ipv4/tcp_wmem", encoding: .utf8).split(whereSeparator: \.isWhitespace)
        let kernelMax = Int(wmem.last ?? "") ?? (4 << 20)
        for c in silent {
            // Hang guard only: a 4 KiB receive window drains the server's
            // send buffer slowly on a loaded machine.
            let (bytes, closed) = c.readToEnd(timeout: 120)
            XCTAssertTrue(closed)
            XCTAssertLessThan(bytes.count, kernelMax + limits.maxQueuedBytes + 65536)
            var decoder = WebSocketMessageDecoder(role: .client)
            decoder.append(bytes)
            while let m = try? decoder.nextMessage() {
                if case .close(let code, _) = m { XCTAssertEqual(code?.rawValue, SignallingCloseCode.slowConsumer) }
            }
        }
        // The member who reads is unaffected.
        XCTAssertEqual(try reader.nextEvent("track_muted")["track"]?.stringValue, trackID)
        XCTAssertEqual(try reader.call(.ping)["ok"], .bool(true))
        silent.forEach { $0.close() }
        XCTAssertEqual(connections(), 2, "only the reader and the publisher are left")
    }

    func testFloodingClientIsRateLimitedWhileAnotherClientsPingIsAnswered() throws {
        let service = try SignallingService(backend: SignallingCoreTests.Backend(), verifier: SignallingCoreTests.Verifier(),
                                        requestRate: 50, requestBurst: 200, logger: quietLogger)
        let address = try startServer(HTTPServer.Limits(), signalling: service)
        let limitedBefore = metric("parley_signalling_rate_limited_total")
        let closedBefore = metric("parley_signalling_rate_limit_closed_total")

        let flooder = try BlockingSignallingClient.connect(loop: group.next(), address: address, host: "127.0.0.1")
        try flooder.call(.auth(token: "mallory@room", room: nil))
        let other = try BlockingSignallingClient.connect(loop: group.next(), address: address, host: "127.0.0.1")
        try other.call(.auth(token: "alice@room", room: nil))

        let sent = 1000...5000
        for i in sent { flooder.send(ClientMessage(id: JSONValue(i), request: .ping).encoded) }
        for _ in 0..<5 { XCTAssertEqual(try other.call(.ping)["ok"], .bool(true), "the other client is answered") }

        // Refused requests are answered, never dropped; a client that keeps on is
        // closed, after the answers to the requests it was allowed.
        XCTAssertEqual(try flooder.waitForClose(timeout: 30), SignallingCloseCode.rateLimited)
        let inbox = flooder.takeQueued()
        let limited = inbox.filter { $0["code"]?.stringValue == "rate_limited" }
        XCTAssertGreaterThan(limited.count, 200)
        for e in limited {
            XCTAssertEqual(e["type"]?.stringValue, "error")
            XCTAssertGreaterThanOrEqual(e["retryAfter"]?.intValue ?? 0, 1, e.serialized)
        }
        // Every request up to the close got exactly one answer: the ids form
        // one run from the first, without gaps.
        let answered = inbox.compactMap { $0["id"]?.intValue }.filter { sent.contains($0) }.sorted()
        XCTAssertEqual(answered, Array(sent.lowerBound..<(sent.lowerBound + answered.count)))
        assertCounted("parley_signalling_rate_limited_total", from: limitedBefore, by: limited.count)
        assertCounted("parley_signalling_rate_limit_closed_total", from: closedBefore, by: 1)
        XCTAssertEqual(try other.call(.ping)["ok"], .bool(true))
    }
}

/// A blocking client socket on loopback, optionally from another 127/8
/// source address or with a small receive buffer (a client that stops reading).
final class RawClient {
    let fd: Int32
    private var isClosed = false

    init(to address: SocketAddress, from source: String? = nil, receiveBuffer: Int32? = nil) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        if var rb = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, 4) }
        if let source {
            let a = SocketAddress(ip: source, port: 0)!
            precondition(a.withSockAddr { bind(fd, $0, $1) } == 0, "bind \(source): \(errno)")
        }
        precondition(address.withSockAddr { connect(fd, $0, $1) } == 0, "connect: \(errno)")
    }

    deinit { close() }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(fd)
    }

    /// Sends everything (errors ignored: the server may have closed).
    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }
    func send(_ text: String) { send(Array(text.utf8)) }

    enum Read { case data([UInt8]), closed, nothing }

    /// What has arrived, without waiting.
    func readAvailable() -> Read {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 { return .data(Array(buf[0..<n])) }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .nothing }
        return .closed
    }

    /// Reads until EOF or reset; `closed` is false if the hang guard ran out first.
    func readToEnd(timeout: Double = 30) -> (bytes: [UInt8], closed: Bool) {
        var out: [UInt8] = []
        let giveUp = Date().addingTimeInterval(timeout)
        while Date() < giveUp {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            switch readAvailable() {
            case .data(let b): out += b
            case .closed: return (out, true)
            case .nothing: continue
            }
        }
        return (out, false)
    }

    /// Reads until the bytes received contain `marker`; false if the connection closed first.
    func readUntil(_ marker: String, timeout: Double = 10) -> Bool {
        var got: [UInt8] = []
        let giveUp = Date().addingTimeInterval(timeout)
        while Date() < giveUp {
            if String(decoding: got, as: UTF8.self).contains(marker) { return true }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            switch readAvailable() {
            case .data(let b): got += b
            case .closed: return String(decoding: got, as: UTF8.self).contains(marker)
            case .nothing: continue
            }
        }
        return false
    }

    /// WebSocket handshake, `auth` with `token` and `join`; returns once the join is answered.
    func openWebSocket(auth token: String) throws {
        struct Refused: Error { let what: String }
        send(WebSocketHandshake.clientRequest(host: "127.0.0.1").request)
        var head: [UInt8] = []
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while !(head.count >= 4 && Array(head.suffix(4)) == end) {
            var byte: UInt8 = 0
            guard recv(fd, &byte, 1, 0) == 1 else { throw Refused(what: "handshake") }
            head.append(byte)
        }
        guard String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101") else { throw Refused(what: "upgrade") }
        let encoder = WebSocketFrameEncoder(role: .client)
        send(encoder.text(ClientMessage(id: 1, request: .auth(token: token, room: nil)).encoded))
        send(encoder.text(ClientMessage(id: 2, request: .join(room: nil, publish: false, subscribe: true, suite: nil)).encoded))
        var decoder = WebSocketMessageDecoder(role: .client)
        let giveUp = Date().addingTimeInterval(10)
        while Date() < giveUp {
            while let m = try decoder.nextMessage() {
                if case .text(let t) = m, let v = try? JSONValue.parse(t), v["id"] == 2 {
                    guard v["ok"] == .bool(true) else { throw Refused(what: t) }
                    return
                }
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            guard case .data(let b) = readAvailable() else { throw Refused(what: "closed before the join reply") }
            decoder.append(b)
        }
        throw Refused(what: "no join reply")
    }
}
