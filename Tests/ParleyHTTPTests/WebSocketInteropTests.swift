import Foundation
import XCTest
@testable import ParleyHTTP
import ParleyTestSupport

/// A real WebSocket client nobody here wrote (python `websockets`) talks to
/// a minimal echo server built from this module's codecs over a loopback
/// TCP socket (the socket lives in the test; the module never touches one).
final class WebSocketInteropTests: XCTestCase {
    static let client = #"""
    import sys
    from websockets.sync.client import connect
    with connect(sys.argv[1], max_size=None, open_timeout=20, close_timeout=20) as ws:
        ws.send("hello ✓")
        assert ws.recv(timeout=20) == "hello ✓"
        data = bytes(range(256)) * 800
        ws.send(data)
        assert ws.recv(timeout=20) == data
        ws.send(["frag", "mented ", "text ✓"])
        assert ws.recv(timeout=20) == "fragmented text ✓"
        assert ws.ping(b"abc").wait(20)
        ws.close(1000, "done")
    print("ok", ws.protocol.close_code, ws.protocol.close_reason)
    """#

    func testPythonWebsocketsClientAgainstOurCodec() throws {
        let python = "/usr/bin/env"
        let check = try runTool("python3", ["-c", "import websockets.sync.client"])
        try XCTSkipUnless(check.status == 0, "python websockets missing (tools/setup installs it)")

        // Listening socket on an ephemeral loopback port.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) == 0 && listen(listener, 1) == 0
                && getsockname(listener, $0, &len) == 0 }
        }
        XCTAssertTrue(bound)
        let port = UInt16(bigEndian: addr.sin_port)

        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: python)
        proc.arguments = ["python3", "-c", Self.client, "ws://127.0.0.1:\(port)/ws"]
        let out = Pipe(), err = Pipe()
        proc.standardOutput = out
        proc.standardError = err
        try proc.run()

        // Hang guard only: accept and every read give up after 30 s.
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let conn = accept(listener, nil, nil)
        XCTAssertGreaterThanOrEqual(conn, 0, "client connected")
        defer { if conn >= 0 { close(conn) } }
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let received = serve(conn)
        proc.waitUntilExit()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(proc.terminationStatus, 0, stderr)
        XCTAssertEqual(stdout.trimmingCharacters(in: .whitespacesAndNewlines), "ok 1000", "client saw our close echo (code 1000, no reason)")

        XCTAssertEqual(received.count, 5, "\(received.map(Self.summary))")
        guard received.count == 5 else { return }
        XCTAssertEqual(received[0], .text("hello ✓"))
        XCTAssertEqual(received[1], .binary(Array((0..<800).flatMap { _ in (0...255).map { UInt8($0) } })))
        XCTAssertEqual(received[2], .text("fragmented text ✓"))
        XCTAssertEqual(received[3], .ping(Array("abc".utf8)))
        XCTAssertEqual(received[4], .close(code: .normalClosure, reason: "done"))
    }

    static func summary(_ m: WebSocketMessage) -> String {
        switch m {
        case .text(let s): return "text(\(s.prefix(20)))"
        case .binary(let b): return "binary(\(b.count))"
        case .ping: return "ping"
        case .pong: return "pong"
        case .close(let c, let r): return "close(\(c.map { "\($0)" } ?? "-"), \(r))"
        }
    }

    /// A blocking echo server: handshake, then echo data, answer pings, and
    /// complete the close handshake. Returns what it received.
    private func serve(_ fd: Int32) -> [WebSocketMessage] {
        var parser = HTTPRequestParser()
        var io = BlockingSocket(fd: fd)
        func read() -> ArraySlice<UInt8>? { io.read() }
        func send(_ bytes: [UInt8]) { io.send(bytes) }

        var head: HTTPRequestHead?
        while head == nil, let bytes = read() {
            parser.append(bytes)
            do {
                if case .head(let h) = try parser.next() { head = h }
            } catch {
                XCTFail("bad upgrade request: \(error)")
                return []
            }
        }
        guard let head else { XCTFail("no request"); return [] }
        XCTAssertEqual(head.path, "/ws")
        do {
            send(try WebSocketHandshake.response(to: head).serialized())
        } catch {
            XCTFail("handshake refused: \(error)")
            return []
        }

        var decoder = WebSocketMessageDecoder(role: .server)
        let encoder = WebSocketFrameEncoder(role: .server)
        decoder.append(parser.takeBufferedBytes())
        var received: [WebSocketMessage] = []
        while true {
            do {
                while let m = try decoder.nextMessage() {
                    received.append(m)
                    switch m {
                    case .text(let s): send(encoder.text(s))
                    case .binary(let b): send(encoder.binary(b))
                    case .ping(let p): send(encoder.pong(p))
                    case .pong: break
                    case .close(let code, _):
                        send(encoder.close(code: code ?? .normalClosure))
                        shutdown(fd, Int32(SHUT_WR))
                        return received
                    }
                }
            } catch {
                send(encoder.encode(WebSocketMessageDecoder.closeFrame(for: error)))
                XCTFail("protocol error from a real client: \(error)")
                return received
            }
            guard let bytes = read() else { return received }
            decoder.append(bytes)
        }
    }

    // MARK: our client codec against a python websockets server

    static let server = #"""
    import sys
    from websockets.sync.server import serve
    def echo(ws):
        for message in ws:
            ws.send(message)
    with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.socket.getsockname()[1], flush=True)
        server.serve_forever()
    """#

    func testOurClientCodecAgainstPythonWebsocketsServer() throws {
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        proc.arguments = ["python3", "-c", Self.server]
        let out = Pipe()
        proc.standardOutput = out
        proc.standardError = FileHandle.nullDevice
        try proc.run()
        defer { proc.terminate(); proc.waitUntilExit() }
        var portLine = Data()
        while !portLine.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            portLine.append(chunk)
        }
        let portText = String(decoding: portLine, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = UInt16(portText) else {
            throw XCTSkip("python websockets server did not start (tools/setup installs websockets): \(portText)")
        }

        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)   // hang guard only
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(connected, 0)
        var io = BlockingSocket(fd: fd)
        func read() -> ArraySlice<UInt8>? { io.read() }
        func send(_ bytes: [UInt8]) { io.send(bytes) }

        let (request, expectedAccept) = WebSocketHandshake.clientRequest(host: "127.0.0.1:\(port)", path: "/ws")
        send(request)
        var pending: [UInt8] = []
        var response: (head: HTTPResponseHead, consumed: Int)?
        while response == nil, let bytes = read() {
            pending += bytes
            response = try HTTPResponseHead.parse(pending)
        }
        let head = try XCTUnwrap(response).head
        XCTAssertTrue(WebSocketHandshake.isAccepted(head, expectedAccept: expectedAccept), "\(head.status) \(head.headers.fields)")

        var decoder = WebSocketMessageDecoder(role: .client)
        decoder.append(pending.dropFirst(response!.consumed))
        let encoder = WebSocketFrameEncoder(role: .client)
        let big = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        send(encoder.text("hi ✓"))
        send(encoder.binary(big))
        send(encoder.encode(WebSocketFrame(fin: false, opcode: .text, payload: Array("frag".utf8))))
        send(encoder.encode(WebSocketFrame(fin: false, opcode: .continuation, payload: Array("mented ".utf8))))
        send(encoder.ping(Array("p".utf8)))
        send(encoder.encode(WebSocketFrame(fin: true, opcode: .continuation, payload: Array("✓".utf8))))

        var received: [WebSocketMessage] = []
        var sentClose = false
        loop: while true {
            while let m = try decoder.nextMessage() {
                received.append(m)
                if case .close = m { break loop }
            }
            if received.filter({ if case .pong = $0 { return false } else { return true } }).count == 3 && !sentClose {
                send(encoder.close(code: .normalClosure, reason: "bye"))
                sentClose = true
            }
            guard let bytes = read() else { break }
            decoder.append(bytes)
        }
        let data = received.filter { if case .pong = $0 { return false } else { return true } }
        XCTAssertEqual(Array(data.prefix(3)), [.text("hi ✓"), .binary(big), .text("fragmented ✓")])
        guard case .close(let code, _)? = data.last, data.count == 4 else { return XCTFail("no close echo") }
        XCTAssertEqual(code, .normalClosure)
        XCTAssertTrue(received.contains(.pong(Array("p".utf8))), "pong for our ping")
    }
}

/// Blocking reads and whole writes on a connected TCP socket (test side only).
struct BlockingSocket {
    let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 65536)

    init(fd: Int32) { self.fd = fd }

    /// The next bytes received, or nil at EOF, error or the receive timeout.
    mutating func read() -> ArraySlice<UInt8>? {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? buffer[0..<n] : nil
    }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }
}
