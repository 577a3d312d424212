import ParleyCore

/// The WebSocket opening handshake (RFC 6455 §4).
public enum WebSocketHandshake {
    /// The GUID appended to the client's key (§1.3).
    public static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key ‖ GUID)).
    public static func acceptValue(forKey key: String) -> String {
        Base64.encode(Crypto.sha1(Array((key + guid).utf8)))
    }

    /// True when the request asks for a WebSocket upgrade at all
    /// (`Upgrade: websocket`); use it to route to `response(to:)`.
    public static func isUpgradeRequest(_ head: HTTPRequestHead) -> Bool {
        head.headers.containsToken("websocket", in: "Upgrade")
    }

    /// Why a handshake was refused, with the response to send before closing.
    public struct Rejection: Error, Sendable, CustomStringConvertible {
        public let response: HTTPResponse
        public let reason: String
        public var description: String { "\(response.status): \(reason)" }
    }

    /// Validates an upgrade request (§4.2.1) and returns the 101 response
    /// to send. Throws a `Rejection` carrying a 400 (malformed request), or a
    /// 426 with `Sec-WebSocket-Version: 13` (missing upgrade or other version).
    /// - Parameter subprotocol: echoed in Sec-WebSocket-Protocol when the client offered it.
    public static func response(to head: HTTPRequestHead, subprotocol: String? = nil) throws(Rejection) -> HTTPResponse {
        func reject(_ status: HTTPStatus, _ reason: String) -> Rejection {
            var h = HTTPHeaders()
            if status == .upgradeRequired {
                h.add("Upgrade", "websocket")
                h.add("Connection", "Upgrade")
                h.add("Sec-WebSocket-Version", "13")
            }
            return Rejection(response: .text(status, reason + "\n", headers: h), reason: reason)
        }
        let h = head.headers
        guard head.method == "GET" else { throw reject(.badRequest, "WebSocket upgrade must be GET") }
        guard head.version == .http1_1 else { throw reject(.badRequest, "WebSocket upgrade needs HTTP/1.1") }
        guard h.containsToken("websocket", in: "Upgrade") else {
            throw reject(.upgradeRequired, "expected Upgrade: websocket")
        }
        guard h.containsToken("upgrade", in: "Connection") else { throw reject(.badRequest, "expected Connection: Upgrade") }
        let versions = h.values("Sec-WebSocket-Version")
        guard versions.count == 1, versions[0] == "13" else {
            throw reject(.upgradeRequired, "unsupported Sec-WebSocket-Version")
        }
        let keys = h.values("Sec-WebSocket-Key")
        guard keys.count == 1, let nonce = Base64.decode(keys[0]), nonce.count == 16 else {
            throw reject(.badRequest, "Sec-WebSocket-Key must be base64 of 16 bytes")
        }
        var out = HTTPHeaders()
        out.add("Upgrade", "websocket")
        out.add("Connection", "Upgrade")
        out.add("Sec-WebSocket-Accept", acceptValue(forKey: keys[0]))
        if let subprotocol, offeredProtocols(head).contains(subprotocol) {
            out.add("Sec-WebSocket-Protocol", subprotocol)
        }
        return HTTPResponse(status: .switchingProtocols, headers: out)
    }

    /// Subprotocols the client offered, in preference order.
    public static func offeredProtocols(_ head: HTTPRequestHead) -> [String] {
        head.headers.values("Sec-WebSocket-Protocol").flatMap { $0.split(separator: ",") }.map { String($0.trimmingOWS()) }
    }

    /// A client's upgrade request with a fresh random key; returns the
    /// request bytes and the Sec-WebSocket-Accept value to expect back.
    public static func clientRequest(host: String, path: String = "/ws",
                                     headers extra: HTTPHeaders = HTTPHeaders()) -> (request: [UInt8], expectedAccept: String) {
        let key = Base64.encode(SecureRandom.bytes(16))
        var text = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        text += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in extra { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        return (Array(text.utf8), acceptValue(forKey: key))
    }
}
