// WebSocket base framing protocol (RFC 6455 §5.2):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-------+-+-------------+-------------------------------+
// |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
// |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
// |N|V|V|V|       |S|             |   (if payload len==126/127)   |
// | |1|2|3|       |K|             |                               |
// +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
// |     Extended payload length continued, if payload len == 127  |
// + - - - - - - - - - - - - - - - +-------------------------------+
// |                               |Masking-key, if MASK set to 1  |
// +-------------------------------+-------------------------------+
// | Masking-key (continued)       |          Payload Data         |
// +-------------------------------- - - - - - - - - - - - - - - - +

/// Frame opcodes (RFC 6455 §5.2, §11.8).
public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    /// Control frames: close, ping, pong (opcode high bit set).
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// A close status code (RFC 6455 §7.4).
public struct WebSocketCloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    public static let normalClosure = WebSocketCloseCode(1000)
    public static let goingAway = WebSocketCloseCode(1001)
    public static let protocolError = WebSocketCloseCode(1002)
    public static let unsupportedData = WebSocketCloseCode(1003)
    /// Never sent: stands for "a close frame without a code".
    public static let noStatusReceived = WebSocketCloseCode(1005)
    /// Never sent: stands for "the connection dropped without a close frame".
    public static let abnormalClosure = WebSocketCloseCode(1006)
    public static let invalidPayloadData = WebSocketCloseCode(1007)
    public static let policyViolation = WebSocketCloseCode(1008)
    public static let messageTooBig = WebSocketCloseCode(1009)
    public static let mandatoryExtension = WebSocketCloseCode(1010)
    public static let internalError = WebSocketCloseCode(1011)
    /// Parley's application code (4000-4999) for a peer that left more than
    /// the server's `max-queued-bytes` unread (docs/protocol.md).
    public static let slowConsumer = WebSocketCloseCode(4009)

    /// Whether a peer may put this code in a close frame (RFC 6455 §7.4.1–7.4.2):
    /// the registered 1000–1003, 1007–1014, and 3000–4999 for libraries/applications.
    public var isValidOnWire: Bool {
        switch rawValue {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }

    public var description: String { String(rawValue) }
}

/// One frame, with its payload already unmasked.
public struct WebSocketFrame: Sendable, Equatable {
    public var fin: Bool
    /// RSV1–RSV3 as the low three bits (RSV1 = 0b100). Must be 0 without extensions.
    public var reserved: UInt8
    public var opcode: WebSocketOpcode
    public var payload: [UInt8]

    public init(fin: Bool = true, reserved: UInt8 = 0, opcode: WebSocketOpcode, payload: [UInt8]) {
        self.fin = fin
        self.reserved = reserved
        self.opcode = opcode
        self.payload = payload
    }

    /// Largest payload a control frame may carry (RFC 6455 §5.5).
    public static let maxControlPayload = 125

    /// Bytes this frame occupies on the wire.
    public func encodedSize(masked: Bool) -> Int {
        let n = payload.count
        let lengthBytes = n < 126 ? 0 : (n <= 0xFFFF ? 2 : 8)
        return 2 + lengthBytes + (masked ? 4 : 0) + n
    }

    /// Appends the frame to `out`, masking the payload with `maskingKey`
    /// when given (clients must mask, servers must not: RFC 6455 §5.1).
    public func write(into out: inout [UInt8], maskingKey: (UInt8, UInt8, UInt8, UInt8)? = nil) {
        out.reserveCapacity(out.count + encodedSize(masked: maskingKey != nil))
        out.append((fin ? 0x80 : 0) | (reserved & 0x7) << 4 | opcode.rawValue)
        let maskBit: UInt8 = maskingKey != nil ? 0x80 : 0
        let n = payload.count
        if n < 126 {
            out.append(maskBit | UInt8(n))
        } else if n <= 0xFFFF {
            out.append(maskBit | 126)
            out.append(UInt8(n >> 8))
            out.append(UInt8(n & 0xFF))
        } else {
            out.append(maskBit | 127)
            let n64 = UInt64(n)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: n64 >> UInt64(shift))) }
        }
        if let k = maskingKey {
            let key = [k.0, k.1, k.2, k.3]
            out.append(contentsOf: key)
            let start = out.count
            out.append(contentsOf: payload)
            out.withUnsafeMutableBufferPointer { buf in
                for i in 0..<n { buf[start + i] ^= key[i & 3] }
            }
        } else {
            out.append(contentsOf: payload)
        }
    }

    /// The frame's wire bytes; see `write(into:maskingKey:)`.
    public func encoded(maskingKey: (UInt8, UInt8, UInt8, UInt8)? = nil) -> [UInt8] {
        var out: [UInt8] = []
        write(into: &out, maskingKey: maskingKey)
        return out
    }

    /// A close frame carrying `code` and a UTF-8 `reason`, truncated at a
    /// character boundary so the payload fits 125 bytes.
    public static func close(code: WebSocketCloseCode, reason: String = "") -> WebSocketFrame {
        var payload: [UInt8] = [UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xFF)]
        var room = maxControlPayload - 2
        for ch in reason {
            let bytes = Array(String(ch).utf8)
            if bytes.count > room { break }
            payload.append(contentsOf: bytes)
            room -= bytes.count
        }
        return WebSocketFrame(opcode: .close, payload: payload)
    }
}

/// Which end of the connection a codec serves; decides masking rules.
public enum WebSocketRole: Sendable {
    /// Receives masked frames, sends unmasked ones.
    case server
    /// Receives unmasked frames, sends masked ones.
    case client
}

/// A protocol violation found while decoding; the connection must be
/// closed with `closeCode` (RFC 6455 §7.1.7).
public struct WebSocketError: Error, Hashable, Sendable, CustomStringConvertible {
    public let closeCode: WebSocketCloseCode
    public let reason: String

    public init(_ closeCode: WebSocketCloseCode, _ reason: String) {
        self.closeCode = closeCode
        self.reason = reason
    }

    public var description: String { "WebSocket \(closeCode): \(reason)" }
}

/// Incremental frame decoder: `append` bytes, then call `nextFrame()` until
/// it returns nil. Header rules (reserved bits and opcodes, control frame
/// size and fragmentation, masking direction, size limit) are checked as
/// soon as the header is in, before the payload is buffered.
public struct WebSocketFrameDecoder: Sendable {
    public let role: WebSocketRole
    /// Largest frame payload accepted; larger is close 1009.
    public let maxPayloadSize: Int

    // Inlinable `append`: called from other modules with the loop's read buffer,
    // the unspecialized generic copied through witness calls and metadata lookups.
    @usableFromInline var buffer: [UInt8] = []
    @usableFromInline var readIndex = 0
    private var failure: WebSocketError?

    public init(role: WebSocketRole, maxPayloadSize: Int = 1 << 20) {
        self.role = role
        self.maxPayloadSize = maxPayloadSize
    }

    public var bufferedByteCount: Int { buffer.count - readIndex }

    @inlinable public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if readIndex > 0 && (readIndex == buffer.count || readIndex * 2 >= buffer.count) {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil when more bytes are needed. After a
    /// thrown error the decoder stays failed.
    public mutating func nextFrame() throws(WebSocketError) -> WebSocketFrame? {
        if let failure { throw failure }
        do {
            return try decode()
        } catch {
            failure = error
            throw error
        }
    }

    private mutating func decode() throws(WebSocketError) -> WebSocketFrame? {
        let available = buffer.count - readIndex
        guard available >= 2 else { return nil }
        let b0 = buffer[readIndex], b1 = buffer[readIndex + 1]
        let fin = b0 & 0x80 != 0
        let reserved = (b0 >> 4) & 0x7
        let masked = b1 & 0x80 != 0
        let len7 = Int(b1 & 0x7F)

        // No extension is negotiated, so RSV bits must be zero (§5.2).
        if reserved != 0 { throw WebSocketError(.protocolError, "reserved bits set") }
        guard let opcode = WebSocketOpcode(rawValue: b0 & 0x0F) else {
            throw WebSocketError(.protocolError, "reserved opcode \(b0 & 0x0F)")
        }
        if opcode.isControl {
            if !fin { throw WebSocketError(.protocolError, "fragmented control frame") }
            if len7 > WebSocketFrame.maxControlPayload { throw WebSocketError(.protocolError, "control frame too long") }
        }
        switch role {
        case .server where !masked: throw WebSocketError(.protocolError, "client frame not masked")
        case .client where masked: throw WebSocketError(.protocolError, "server frame masked")
        default: break
        }

        var headerLength = 2
        var length: Int
        switch len7 {
        case 126:
            headerLength += 2
            guard available >= headerLength else { return nil }
            length = Int(buffer[readIndex + 2]) << 8 | Int(buffer[readIndex + 3])
        case 127:
            headerLength += 8
            guard available >= headerLength else { return nil }
            var l: UInt64 = 0
            for i in 0..<8 { l = l << 8 | UInt64(buffer[readIndex + 2 + i]) }
            if l & (1 << 63) != 0 { throw WebSocketError(.protocolError, "payload length high bit set") }
            if l > UInt64(maxPayloadSize) { throw WebSocketError(.messageTooBig, "frame of \(l) bytes") }
            length = Int(l)
        default:
            length = len7
        }
        if length > maxPayloadSize { throw WebSocketError(.messageTooBig, "frame of \(length) bytes") }

        var key: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        if masked {
            guard available >= headerLength + 4 else { return nil }
            let k = readIndex + headerLength
            key = (buffer[k], buffer[k + 1], buffer[k + 2], buffer[k + 3])
            headerLength += 4
        }
        guard available >= headerLength + length else { return nil }

        let start = readIndex + headerLength
        var payload = Array(buffer[start..<start + length])
        if masked {
            let keyBytes = [key.0, key.1, key.2, key.3]
            payload.withUnsafeMutableBufferPointer { p in
                for i in 0..<p.count { p[i] ^= keyBytes[i & 3] }
            }
        }
        readIndex = start + length
        return WebSocketFrame(fin: fin, reserved: reserved, opcode: opcode, payload: payload)
    }
}
