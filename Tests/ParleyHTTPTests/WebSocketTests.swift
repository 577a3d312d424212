import XCTest
@testable import ParleyHTTP

final class WebSocketTests: XCTestCase {
    private func decodeAll(_ bytes: [UInt8], role: WebSocketRole, maxMessageSize: Int = 1 << 20,
                           byteByByte: Bool = false) throws -> [WebSocketMessage] {
        var d = WebSocketMessageDecoder(role: role, maxMessageSize: maxMessageSize)
        var out: [WebSocketMessage] = []
        if byteByByte {
            for b in bytes {
                d.append(CollectionOfOne(b))
                while let m = try d.nextMessage() { out.append(m) }
            }
        } else {
            d.append(bytes)
            while let m = try d.nextMessage() { out.append(m) }
        }
        return out
    }

    private func closeCode(_ bytes: [UInt8], role: WebSocketRole = .server, maxMessageSize: Int = 1 << 20) -> UInt16? {
        do {
            _ = try decodeAll(bytes, role: role, maxMessageSize: maxMessageSize)
            return nil
        } catch {
            return (error as? WebSocketError)?.closeCode.rawValue
        }
    }

    /// Masks `payload` with the RFC's example key 37 fa 21 3d.
    private func masked(_ b0: UInt8, _ payload: [UInt8], key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]) -> [UInt8] {
        WebSocketFrame(fin: b0 & 0x80 != 0, reserved: (b0 >> 4) & 7, opcode: WebSocketOpcode(rawValue: b0 & 0xF)!,
                       payload: payload).encoded(maskingKey: (key[0], key[1], key[2], key[3]))
    }

    // MARK: RFC 6455 §5.7 examples

    func testRFC6455Section5_7SingleFrameUnmasked() throws {
        let bytes: [UInt8] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        XCTAssertEqual(try decodeAll(bytes, role: .client), [.text("Hello")])
        XCTAssertEqual(WebSocketFrameEncoder(role: .server).text("Hello"), bytes)
    }

    func testRFC6455Section5_7SingleFrameMasked() throws {
        let bytes: [UInt8] = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        for byteByByte in [false, true] {
            XCTAssertEqual(try decodeAll(bytes, role: .server, byteByByte: byteByByte), [.text("Hello")])
        }
        XCTAssertEqual(WebSocketFrame(opcode: .text, payload: Array("Hello".utf8)).encoded(maskingKey: (0x37, 0xfa, 0x21, 0x3d)), bytes)
    }

    func testRFC6455Section5_7FragmentedUnmasked() throws {
        let bytes: [UInt8] = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
        XCTAssertEqual(try decodeAll(bytes, role: .client), [.text("Hello")])
    }

    func testRFC6455Section5_7PingAndMaskedPong() throws {
        XCTAssertEqual(try decodeAll([0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], role: .client), [.ping(Array("Hello".utf8))])
        let pong: [UInt8] = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        XCTAssertEqual(try decodeAll(pong, role: .server), [.pong(Array("Hello".utf8))])
    }

    func testRFC6455Section5_7BinaryWith16And64BitLengths() throws {
        let p256 = (0..<256).map { UInt8($0 & 0xFF) }
        let f256 = WebSocketFrameEncoder(role: .server).binary(p256)
        XCTAssertEqual(Array(f256.prefix(4)), [0x82, 0x7E, 0x01, 0x00])
        XCTAssertEqual(try decodeAll(f256, role: .client), [.binary(p256)])

        let p64k = (0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let f64k = WebSocketFrameEncoder(role: .server).binary(p64k)
        XCTAssertEqual(Array(f64k.prefix(10)), [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
        XCTAssertEqual(try decodeAll(f64k, role: .client), [.binary(p64k)])
    }

    // MARK: Handshake (RFC 6455 §1.3, §4.2)

    private func head(_ text: String) throws -> HTTPRequestHead {
        var p = HTTPRequestParser()
        p.append(Array(text.utf8))
        return try XCTUnwrap(try p.nextRequest()).head
    }

    func testHandshakeRFCExampleKey() throws {
        XCTAssertEqual(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let h = try head("GET /ws HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n")
        XCTAssertTrue(WebSocketHandshake.isUpgradeRequest(h))
        let r = try WebSocketHandshake.response(to: h, subprotocol: "chat")
        XCTAssertEqual(String(decoding: r.serialized(), as: UTF8.self),
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
    }

    func testHandshakeRejections() throws {
        let good = "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        let cases: [(String, Int)] = [
            ("GET /ws HTTP/1.1\r\n" + good + "Sec-WebSocket-Version: 8\r\n\r\n", 426),
            ("GET /ws HTTP/1.1\r\n" + good + "\r\n", 426),
            ("GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Version: 13\r\n\r\n", 426),
            ("POST /ws HTTP/1.1\r\n" + good + "Sec-WebSocket-Version: 13\r\n\r\n", 400),
            ("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
             + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
            ("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             + "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
            ("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             + "Sec-WebSocket-Version: 13\r\n\r\n", 400),
        ]
        for (text, status) in cases {
            XCTAssertThrowsError(try WebSocketHandshake.response(to: try head(text)), text) { error in
                let rejection = error as! WebSocketHandshake.Rejection
                XCTAssertEqual(rejection.response.status.code, status, text)
                if status == 426 { XCTAssertEqual(rejection.response.headers["Sec-WebSocket-Version"], "13") }
            }
        }
    }

    func testClientRequestIsAcceptedByServerSide() throws {
        let (request, expected) = WebSocketHandshake.clientRequest(host: "127.0.0.1:7700", path: "/ws")
        var p = HTTPRequestParser()
        p.append(request)
        let h = try XCTUnwrap(try p.nextRequest()).head
        let r = try WebSocketHandshake.response(to: h)
        XCTAssertEqual(r.headers["Sec-WebSocket-Accept"], expected)
    }

    // MARK: Protocol violations → close codes

    func testProtocolViolationsTable() {
        let cases: [([UInt8], UInt16, String)] = [
            ([0x81, 0x05] + Array("Hello".utf8), 1002, "unmasked client frame"),
            (masked(0x91, Array("x".utf8)), 1002, "RSV1 without extension"),
            (masked(0xC1, Array("x".utf8)), 1002, "RSV2 / RSV1 set"),
            ([0x83, 0x80, 1, 2, 3, 4], 1002, "reserved data opcode 3"),
            ([0x8B, 0x80, 1, 2, 3, 4], 1002, "reserved control opcode B"),
            (masked(0x09, []), 1002, "fragmented ping"),
            ([0x89, 0xFE, 0, 126, 1, 2, 3, 4] + Array(repeating: 0, count: 126), 1002, "ping over 125 bytes"),
            (masked(0x80, Array("x".utf8)), 1002, "continuation with nothing to continue"),
            (masked(0x01, Array("a".utf8)) + masked(0x81, Array("b".utf8)), 1002, "new text inside fragmented message"),
            (masked(0x81, [0xFF]), 1007, "invalid UTF-8"),
            (masked(0x81, [0xED, 0xA0, 0x80]), 1007, "UTF-16 surrogate"),
            (masked(0x81, [0xC0, 0xAF]), 1007, "overlong"),
            (masked(0x01, [0xCE]) + masked(0x00, [0xFF]) , 1007, "bad UTF-8 fails at the fragment, before fin"),
            (masked(0x01, [0xCE]) + masked(0x80, []), 1007, "truncated code point at end of message"),
            (masked(0x88, [0x03]), 1002, "close payload of 1 byte"),
            (masked(0x88, [0x03, 0xED]), 1002, "close code 1005 on the wire"),
            (masked(0x88, [0x03, 0xE7]), 1002, "close code 999"),
            (masked(0x88, [0x13, 0x88]), 1002, "close code 5000"),
            (masked(0x88, [0x03, 0xE8, 0xFF]), 1007, "invalid UTF-8 close reason"),
            ([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4], 1002, "64-bit length with high bit"),
        ]
        for (bytes, code, why) in cases {
            XCTAssertEqual(closeCode(bytes), code, why)
        }
    }

    func testMessageTooBig() {
        // One frame over the limit: refused from its header alone.
        XCTAssertEqual(closeCode([0x82, 0xFF, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4]), 1009)
        // Fragments that add up past the limit.
        let frag = masked(0x02, Array(repeating: 1, count: 600)) + masked(0x80, Array(repeating: 2, count: 600))
        XCTAssertEqual(closeCode(frag, maxMessageSize: 1000), 1009)
        XCTAssertNil(closeCode(frag, maxMessageSize: 1200))
    }

    func testControlFramesInterleaveWithFragments() throws {
        let bytes = masked(0x01, Array("Hel".utf8)) + masked(0x89, [1, 2]) + masked(0x00, Array("l".utf8))
            + masked(0x8A, []) + masked(0x80, Array("o ✓".utf8))
        for byteByByte in [false, true] {
            XCTAssertEqual(try decodeAll(bytes, role: .server, byteByByte: byteByByte),
                           [.ping([1, 2]), .pong([]), .text("Hello ✓")])
        }
    }

    func testCloseHandshake() throws {
        let close = masked(0x88, [0x03, 0xE8] + Array("bye".utf8))
        // Bytes after the close frame are ignored.
        let msgs = try decodeAll(close + masked(0x81, Array("late".utf8)), role: .server)
        XCTAssertEqual(msgs, [.close(code: .normalClosure, reason: "bye")])
        XCTAssertEqual(try decodeAll(masked(0x88, []), role: .server), [.close(code: nil, reason: "")])
        XCTAssertEqual(try decodeAll(masked(0x88, [0x0F, 0xA0]), role: .server), [.close(code: WebSocketCloseCode(4000), reason: "")])

        // Our close frame: code + reason, truncated to 125 bytes at a character boundary.
        let long = String(repeating: "é", count: 100)
        let frame = WebSocketFrame.close(code: .goingAway, reason: long)
        XCTAssertLessThanOrEqual(frame.payload.count, 125)
        XCTAssertEqual(Array(frame.payload.prefix(2)), [0x03, 0xE9])
        XCTAssertTrue(UTF8Validator.isValid(frame.payload.dropFirst(2)))
        let reply = WebSocketFrameEncoder(role: .server).close(code: .goingAway, reason: long)
        XCTAssertEqual(try decodeAll(reply, role: .client),
                       [.close(code: .goingAway, reason: String(repeating: "é", count: 61))])
        XCTAssertEqual(WebSocketMessageDecoder.closeFrame(for: WebSocketError(.invalidPayloadData, "x")).payload,
                       [0x03, 0xEF, 0x78])
    }

    func testClientEncoderMasksAndServerDecodes() throws {
        let enc = WebSocketFrameEncoder(role: .client)
        let bytes = enc.text("hi there") + enc.binary([9, 8, 7]) + enc.ping([1]) + enc.close()
        XCTAssertEqual(bytes[1] & 0x80, 0x80)
        XCTAssertEqual(try decodeAll(bytes, role: .server),
                       [.text("hi there"), .binary([9, 8, 7]), .ping([1]), .close(code: .normalClosure, reason: "")])
        // A client refuses masked frames from a server.
        XCTAssertEqual(closeCode(enc.text("x"), role: .client), 1002)
    }

    func testUTF8ValidatorBoundaries() {
        let valid: [[UInt8]] = [[], [0x7F], [0xC2, 0x80], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
                                [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], Array("κόσμε".utf8)]
        let invalid: [[UInt8]] = [[0x80], [0xC1, 0xBF], [0xE0, 0x9F, 0xBF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                                  [0xF5, 0x80, 0x80, 0x80], [0xC2], [0xE1, 0x80], [0xFE], [0xC2, 0x41]]
        for v in valid { XCTAssertTrue(UTF8Validator.isValid(v), "\(v)") }
        for v in invalid { XCTAssertFalse(UTF8Validator.isValid(v), "\(v)") }
    }
}
