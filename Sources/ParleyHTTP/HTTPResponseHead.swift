/// A parsed response status line and header block, for the client side
/// (the load generator's WebSocket client reading a `101`).
public struct HTTPResponseHead: Sendable {
    public var version: HTTPVersion
    public var status: HTTPStatus
    public var headers: HTTPHeaders

    /// Largest response head accepted.
    public static let maxHeadLength = 16384

    /// Parses a response head from the start of `bytes`. Returns nil while
    /// the head is incomplete; otherwise the head and how many bytes it
    /// used (what follows belongs to the body or the upgraded protocol).
    /// Throws `.headerFieldsTooLarge` past `maxHeadLength`, `.badRequest` on
    /// malformed syntax (the case name is shared with the request parser).
    public static func parse<C: Collection>(_ bytes: C) throws(HTTPParseError) -> (head: HTTPResponseHead, consumed: Int)?
    where C.Element == UInt8 {
        let b = Array(bytes.prefix(maxHeadLength + 1))
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        var end: Int?
        var i = 0
        while i < b.count {
            if b[i] == 0x0A {
                let lineEnd = i > start && b[i - 1] == 0x0D ? i - 1 : i
                if lineEnd == start && !lines.isEmpty { end = i + 1; break }
                lines.append(b[start..<lineEnd])
                start = i + 1
            }
            i += 1
        }
        guard let consumed = end else {
            if b.count > maxHeadLength { throw .headerFieldsTooLarge }
            return nil
        }
        if consumed > maxHeadLength { throw .headerFieldsTooLarge }

        // status-line = HTTP-version SP 3DIGIT SP [reason-phrase]
        let statusLine = lines[0]
        guard statusLine.count >= 12 else { throw .badRequest("malformed status line") }
        let s = Array(statusLine)
        let version: HTTPVersion
        switch String(decoding: s[0..<8], as: UTF8.self) {
        case "HTTP/1.1": version = .http1_1
        case "HTTP/1.0": version = .http1_0
        default: throw .badRequest("unsupported response version")
        }
        guard s[8] == 0x20, s[9...11].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), s.count == 12 || s[12] == 0x20 else {
            throw .badRequest("malformed status line")
        }
        let code = Int(s[9] - 0x30) * 100 + Int(s[10] - 0x30) * 10 + Int(s[11] - 0x30)
        let reason = s.count > 13 ? String(decoding: s[13...], as: UTF8.self) : ""

        var headers = HTTPHeaders()
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                  line[line.startIndex..<colon].allSatisfy(isTokenChar) else { throw .badRequest("malformed header") }
            for c in line[(colon + 1)...] where (c < 0x20 && c != 0x09) || c == 0x7F {
                throw .badRequest("control character in header value")
            }
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingOWS()
            headers.add(String(decoding: line[line.startIndex..<colon], as: UTF8.self), String(value))
        }
        return (HTTPResponseHead(version: version, status: HTTPStatus(code: code, reason: reason), headers: headers), consumed)
    }
}

extension WebSocketHandshake {
    /// Client side: whether a server's response completes the handshake
    /// started by `clientRequest` (101, Upgrade/Connection, matching accept).
    public static func isAccepted(_ response: HTTPResponseHead, expectedAccept: String) -> Bool {
        response.status.code == 101
            && response.headers.containsToken("websocket", in: "Upgrade")
            && response.headers.containsToken("upgrade", in: "Connection")
            && response.headers["Sec-WebSocket-Accept"] == expectedAccept
    }
}
