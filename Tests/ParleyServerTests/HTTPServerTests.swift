import XCTest
import ParleyTestSupport
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
@testable import ParleyServer
@testable import ParleyWeb

/// The HTTP listener on real loopback sockets, with curl (a client nobody
/// here wrote) and a raw socket for what curl will not send.
final class HTTPServerTests: XCTestCase {
    var group: EventLoopGroup!
    var server: HTTPServer!
    var router: HTTPRouter!
    var base = ""
    var port: UInt16 = 0

    override func setUpWithError() throws {
        group = try EventLoopGroup(numberOfThreads: 2, logger: quietLogger)
        router = HTTPRouter()
        BuiltinRoutes.install(on: router)
        server = HTTPServer(group: group, router: router, tls: nil, logger: quietLogger)
        let bound = try server.start(at: SocketAddress("127.0.0.1:0")!)
        port = bound.port
        base = "http://127.0.0.1:\(port)"
    }

    override func tearDown() {
        server.stop()
        group.syncShutdownGracefully()
    }

    func testHealthzAndMetricsWithCurl() throws {
        let h = try runTool("curl", ["-sS", "-i", "\(base)/healthz"])
        XCTAssertEqual(h.status, 0, h.err)
        XCTAssertTrue(h.out.hasPrefix("HTTP/1.1 200"), h.out)
        XCTAssertTrue(h.out.contains("application/json"))
        XCTAssertTrue(h.out.hasSuffix("{\"status\":\"ok\"}\n"), h.out)

        MetricsRegistry.shared.counter("parley_test_marker_total", help: "test").inc(7)
        let m = try runTool("curl", ["-sS", "-i", "\(base)/metrics"])
        XCTAssertTrue(m.out.contains("text/plain; version=0.0.4"), m.out)
        XCTAssertTrue(m.out.contains("# TYPE parley_http_requests_total counter"), m.out)
        XCTAssertTrue(m.out.contains("parley_test_marker_total 7"), m.out)
    }

    func testUnknownPathAndWrongMethod() throws {
        let nf = try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/nope"])
        XCTAssertEqual(nf.out, "404")
        let na = try runTool("curl", ["-s", "-i", "-X", "POST", "\(base)/healthz"])
        XCTAssertTrue(na.out.hasPrefix("HTTP/1.1 405"), na.out)
        XCTAssertTrue(na.out.contains("Allow: GET"), na.out)
    }

    /// A `blocking:` route runs on a pool thread and answers from the
    /// connection's loop; with the pool's queue full it answers 503 at once.
    func testBlockingRouteRunsOnThePoolAndAFullPoolAnswers503() throws {
        let pool = BlockingPool(threads: 1, queueCapacity: 1, metrics: MetricsRegistry())
        let gate = Gate()
        defer { gate.open(); pool.shutdown() }
        let loops = group.loops
        router.add("GET", .exact("/slow"), blocking: pool) { req in
            .json(.ok, ["on_loop": .bool(loops.contains { $0.inEventLoop }), "path": .string(req.path)])
        }
        let ok = try runTool("curl", ["-sS", "-w", " %{http_code}", "\(base)/slow"])
        XCTAssertTrue(ok.out.hasSuffix(" 200"), ok.out)
        XCTAssertTrue(ok.out.contains(#""on_loop":false"#), ok.out)

        // Hold the one thread and fill the one queue slot: the next request is refused.
        try pool.run(on: loops[0], { gate.wait() }, then: { _ in })
        waitUntil("the pool thread is held") { gate.waiters == 1 }
        try pool.run(on: loops[0], { gate.wait() }, then: { _ in })
        let busy = try runTool("curl", ["-sS", "-i", "\(base)/slow"])
        XCTAssertTrue(busy.out.hasPrefix("HTTP/1.1 503"), busy.out)
        XCTAssertTrue(busy.out.contains("Retry-After: 1"), busy.out)
        gate.open()
        XCTAssertEqual(try runTool("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/slow"]).out, "200")
    }

    func testDaemonRegisteredPrefixRouteStreamsAFile() throws {
        let dir = tempDir("http")
        let path = dir + "/seg.ts"
        let bytes = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        router.add("GET", .prefix("/hls/"), sync: { req in
            guard !req.pathRemainder.contains("..") else { return .error(.badRequest, "bad path") }
            return .file(dir + "/" + req.pathRemainder, contentType: "video/mp2t", request: req, cacheControl: "no-cache")
        })
        let out = dir + "/out.ts"
        let r = try runTool("curl", ["-sS", "-o", out, "-w", "%{http_code} %{size_download}", "\(base)/hls/seg.ts"])
        XCTAssertEqual(r.out, "200 \(3 << 20)")
        XCTAssertEqual(FileManager.default.contents(atPath: out), Data(bytes))
        XCTAssertEqual(try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/hls/missing.ts"]).out, "404")
        // Two requests on one keep-alive connection, the second after a streamed file.
        let two = try runTool("curl", ["-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}%{num_connects}\n",
                                   "\(base)/hls/seg.ts", "\(base)/healthz"])
        XCTAssertEqual(two.out, "2001\n2000\n")
    }

    func testPipelinedRequestsAndMalformedRequest() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let ok = SocketAddress("127.0.0.1:\(port)")!.withSockAddr { connect(fd, $0, $1) }
        XCTAssertEqual(ok, 0)
        let req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n"
        _ = req.withCString { send(fd, $0, strlen($0), 0) }
        var all = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            all += buf[0..<n]
        }
        let text = String(decoding: all, as: UTF8.self)
        let statuses = text.components(separatedBy: "\n").filter { $0.hasPrefix("HTTP/1.1 ") }
        XCTAssertEqual(statuses.map { String($0.prefix(12)) }, ["HTTP/1.1 200", "HTTP/1.1 404", "HTTP/1.1 400"], text)
    }

    final class NullSocketService: WebSocketService, @unchecked Sendable {
        func webSocketOpened(_ ws: WebSocketConnection, request: HTTPServerRequest) {}
        func webSocket(_ ws: WebSocketConnection, received text: String) { ws.send(text: text) }
        func webSocketClosed(_ ws: WebSocketConnection) {}
    }

    func testSilentWebSocketPeerIsClosedDespiteServerPings() throws {
        let r = HTTPRouter()
        r.addWebSocket("/ws", NullSocketService())
        var limits = HTTPServer.Limits()
        limits.idleTimeout = .seconds(3)
        let s = HTTPServer(group: group, router: r, tls: nil, limits: limits, logger: quietLogger)
        let a = try s.start(at: SocketAddress("127.0.0.1:0")!)
        defer { s.stop() }
        let dead = MetricsRegistry.shared.counter("parley_http_websocket_dead_peers_total", help: "").current
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        XCTAssertEqual(a.withSockAddr { connect(fd, $0, $1) }, 0)
        let (req, _) = WebSocketHandshake.clientRequest(host: "127.0.0.1")
        _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        // Read (and never answer) until the server closes: the 101, then pings, then EOF.
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var total = 0, eof = false
        let deadline = Date().addingTimeInterval(30) // hang guard
        while Date() < deadline, poll(&p, 1, 1000) >= 0 {
            guard p.revents != 0 else { continue }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { eof = true; break }
            total += n
        }
        XCTAssertTrue(eof, "the server closed the silent connection")
        XCTAssertGreaterThan(total, 0)
        XCTAssertEqual(MetricsRegistry.shared.counter("parley_http_websocket_dead_peers_total", help: "").current, dead + 1)
    }

    /// Sends `count` numbered messages from a thread that is not the connection's loop, then closes.
    final class BurstService: WebSocketService, @unchecked Sendable {
        let count: Int
        init(count: Int) { self.count = count }
        func webSocketOpened(_ ws: WebSocketConnection, request: HTTPServerRequest) {
            let n = count
            Thread.detachNewThread {
                for i in 0..<n { ws.send(text: "m\(i)") }
                ws.close(code: 1000, reason: "done")
            }
        }
        func webSocket(_ ws: WebSocketConnection, received text: String) {}
        func webSocketClosed(_ ws: WebSocketConnection) {}
    }

    func testFramesSentFromAnotherThreadArriveInOrderBeforeTheClose() throws {
        let n = 5_000
        router.addWebSocket("/burst", BurstService(count: n))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        XCTAssertEqual(SocketAddress("127.0.0.1:\(port)")!.withSockAddr { connect(fd, $0, $1) }, 0)
        let (req, _) = WebSocketHandshake.clientRequest(host: "127.0.0.1", path: "/burst")
        _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        // Skip the 101's head, then decode frames until the close.
        var pending: [UInt8] = [], headDone = false
        var decoder = WebSocketMessageDecoder(role: .client)
        var texts: [String] = [], closeCode: WebSocketCloseCode?
        var buf = [UInt8](repeating: 0, count: 65536)
        while closeCode == nil {
            let got = recv(fd, &buf, buf.count, 0)
            guard got > 0 else { break }
            var bytes = Array(buf[0..<got])
            if !headDone {
                pending += bytes
                guard let end = pending.firstRange(of: Array("\r\n\r\n".utf8)) else { continue }
                headDone = true
                bytes = Array(pending[end.upperBound...])
            }
            decoder.append(bytes)
            while let m = try decoder.nextMessage() {
                switch m {
                case .text(let t): texts.append(t)
                case .close(let code, _): closeCode = code
                default: break
                }
            }
        }
        XCTAssertEqual(closeCode?.rawValue, 1000)
        XCTAssertEqual(texts.count, n)
        XCTAssertEqual(texts, (0..<n).map { "m\($0)" })
    }
}
