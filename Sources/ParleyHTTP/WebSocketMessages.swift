import ParleyCore

/// A message (or control frame) received on a WebSocket.
public enum WebSocketMessage: Sendable, Equatable {
    case text(String)
    case binary([UInt8])
    case ping([UInt8])
    case pong([UInt8])
    /// The peer's close frame; `code` is nil when it carried no status (1005).
    case close(code: WebSocketCloseCode?, reason: String)
}

/// Turns frames into messages (RFC 6455 §5.4–5.5, §8.1): reassembles
/// fragments, lets control frames interleave, validates UTF-8 in text
/// (incrementally, so a bad fragment fails at once: 1007), enforces the
/// maximum message size (1009) and the close frame rules (1002).
///
/// Sans-IO: `append` received bytes, then drain `nextMessage()`. On a
/// thrown `WebSocketError` send `closeFrame(for:)` and close the TCP
/// connection. On `.close` reply with `WebSocketFrame.close(code:)` echoing
/// the code (unless you initiated the close), then close.
/// One instance per connection, used from one thread at a time.
public struct WebSocketMessageDecoder: Sendable {
    public let maxMessageSize: Int
    @usableFromInline var frames: WebSocketFrameDecoder
    private var fragmentOpcode: WebSocketOpcode?
    private var fragments: [UInt8] = []
    private var utf8 = UTF8Validator()
    /// Set once a close frame was received: later bytes are ignored (§5.5.1).
    public private(set) var closeReceived = false

    /// - Parameters:
    ///   - role: `.server` requires masked frames from the client.
    ///   - maxMessageSize: largest reassembled message (default 1 MiB).
    public init(role: WebSocketRole, maxMessageSize: Int = 1 << 20) {
        self.maxMessageSize = maxMessageSize
        self.frames = WebSocketFrameDecoder(role: role, maxPayloadSize: maxMessageSize)
    }

    @inlinable public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if closeReceived { return }
        frames.append(bytes)
    }

    /// The next message, or nil when more bytes are needed.
    public mutating func nextMessage() throws(WebSocketError) -> WebSocketMessage? {
        while !closeReceived, let frame = try frames.nextFrame() {
            if let message = try handle(frame) { return message }
        }
        return nil
    }

    private mutating func handle(_ frame: WebSocketFrame) throws(WebSocketError) -> WebSocketMessage? {
        switch frame.opcode {
        case .ping:
            return .ping(frame.payload)
        case .pong:
            return .pong(frame.payload)
        case .close:
            closeReceived = true
            return try parseClose(frame.payload)
        case .text, .binary:
            if fragmentOpcode != nil { throw WebSocketError(.protocolError, "new data frame inside a fragmented message") }
            if frame.fin {
                return try complete(opcode: frame.opcode, payload: frame.payload)
            }
            fragmentOpcode = frame.opcode
            fragments.removeAll(keepingCapacity: true)
            utf8 = UTF8Validator()
            try appendFragment(frame.payload)
            return nil
        case .continuation:
            guard let opcode = fragmentOpcode else { throw WebSocketError(.protocolError, "continuation without a message") }
            try appendFragment(frame.payload)
            guard frame.fin else { return nil }
            fragmentOpcode = nil
            let payload = fragments
            fragments = []
            return try complete(opcode: opcode, payload: payload, validated: true)
        }
    }

    private mutating func appendFragment(_ payload: [UInt8]) throws(WebSocketError) {
        if payload.count > maxMessageSize - fragments.count {
            throw WebSocketError(.messageTooBig, "message over \(maxMessageSize) bytes")
        }
        if fragmentOpcode == .text && !utf8.feed(payload) {
            throw WebSocketError(.invalidPayloadData, "invalid UTF-8 in text message")
        }
        fragments.append(contentsOf: payload)
    }

    private mutating func complete(opcode: WebSocketOpcode, payload: [UInt8],
                                   validated: Bool = false) throws(WebSocketError) -> WebSocketMessage {
        if opcode == .binary { return .binary(payload) }
        let valid = validated ? utf8.isComplete : UTF8Validator.isValid(payload)
        guard valid else { throw WebSocketError(.invalidPayloadData, "invalid UTF-8 in text message") }
        return .text(String(decoding: payload, as: UTF8.self))
    }

    private func parseClose(_ payload: [UInt8]) throws(WebSocketError) -> WebSocketMessage {
        if payload.isEmpty { return .close(code: nil, reason: "") }
        guard payload.count >= 2 else { throw WebSocketError(.protocolError, "close payload of 1 byte") }
        let code = WebSocketCloseCode(UInt16(payload[0]) << 8 | UInt16(payload[1]))
        guard code.isValidOnWire else { throw WebSocketError(.protocolError, "invalid close code \(code)") }
        let reason = payload[2...]
        guard UTF8Validator.isValid(reason) else { throw WebSocketError(.invalidPayloadData, "invalid UTF-8 in close reason") }
        return .close(code: code, reason: String(decoding: reason, as: UTF8.self))
    }

    /// The close frame to send after `error`.
    public static func closeFrame(for error: WebSocketError) -> WebSocketFrame {
        .close(code: error.closeCode, reason: error.reason)
    }
}

/// Builds outbound frames for one role: a `.client` encoder masks every
/// frame with a fresh random key (RFC 6455 §5.3), a `.server` encoder never masks.
public struct WebSocketFrameEncoder: Sendable {
    public let role: WebSocketRole

    public init(role: WebSocketRole) { self.role = role }

    /// Appends `frame` to `out`.
    public func write(_ frame: WebSocketFrame, into out: inout [UInt8]) {
        switch role {
        case .server:
            frame.write(into: &out)
        case .client:
            // The key must be unpredictable to the page's script (§10.3); the system CSPRNG is.
            let k = SecureRandom.bytes(4)
            frame.write(into: &out, maskingKey: (k[0], k[1], k[2], k[3]))
        }
    }

    public func encode(_ frame: WebSocketFrame) -> [UInt8] {
        var out: [UInt8] = []
        write(frame, into: &out)
        return out
    }

    public func text(_ text: String) -> [UInt8] { encode(WebSocketFrame(opcode: .text, payload: Array(text.utf8))) }

    /// Appends a text frame carrying `text` to `out` (a server's frame is
    /// written straight from the string's UTF-8, without a payload copy).
    public func appendText(_ text: String, to out: inout [UInt8]) {
        guard role == .server else { return write(WebSocketFrame(opcode: .text, payload: Array(text.utf8)), into: &out) }
        let n = text.utf8.count
        out.reserveCapacity(out.count + n + 10)
        out.append(0x80 | WebSocketOpcode.text.rawValue)
        if n < 126 {
            out.append(UInt8(n))
        } else if n <= 0xFFFF {
            out.append(126)
            out.append(UInt8(n >> 8))
            out.append(UInt8(n & 0xFF))
        } else {
            out.append(127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: UInt64(n) >> UInt64(shift))) }
        }
        out.append(contentsOf: text.utf8)
    }
    public func binary(_ bytes: [UInt8]) -> [UInt8] { encode(WebSocketFrame(opcode: .binary, payload: bytes)) }
    /// Ping payloads are truncated to 125 bytes.
    public func ping(_ payload: [UInt8] = []) -> [UInt8] {
        encode(WebSocketFrame(opcode: .ping, payload: Array(payload.prefix(WebSocketFrame.maxControlPayload))))
    }
    /// The answer to a ping: a pong echoing its payload (§5.5.3).
    public func pong(_ payload: [UInt8]) -> [UInt8] {
        encode(WebSocketFrame(opcode: .pong, payload: Array(payload.prefix(WebSocketFrame.maxControlPayload))))
    }
    public func close(code: WebSocketCloseCode = .normalClosure, reason: String = "") -> [UInt8] {
        encode(.close(code: code, reason: reason))
    }
}
