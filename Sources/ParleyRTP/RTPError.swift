/// The one error type of ParleyRTP. Parsers throw it for malformed input,
/// writers for a destination buffer that is too small or a value that
/// cannot be encoded. Cases carry enough context to log the drop reason.
public enum RTPError: Error, Equatable, Sendable {
    /// Fewer bytes than the structure needs.
    case truncated(need: Int, have: Int)
    /// Version field is not 2 (RFC 3550 §5.1, §6.4.1).
    case badVersion(UInt8)
    /// Padding count is 0 or larger than the bytes it would remove (RFC 3550 §5.1).
    case badPadding(count: Int, available: Int)
    /// An RFC 8285 header extension element runs past the extension block.
    case badHeaderExtension(offset: Int)
    /// An RFC 8285 element cannot be encoded in the chosen profile
    /// (one-byte: id 1...14, 1...16 bytes; two-byte: id 1...255, 0...255 bytes).
    case unencodableHeaderExtension(id: UInt8, length: Int)
    /// The RTCP length field points past the end of the compound packet (RFC 3550 §6.4.1).
    case badRTCPLength(offset: Int, words: Int)
    /// The RTCP packet type or format is not the one the parser was asked for.
    case unexpectedPacketType(type: UInt8, format: UInt8)
    /// The body of an RTCP packet disagrees with its count field or structure.
    case badRTCPBody(type: UInt8, reason: StaticString)
    /// Destination buffer too small for `write(into:)`.
    case bufferTooSmall(need: Int, have: Int)
    /// A count does not fit its wire field (e.g. more than 31 report blocks).
    case tooMany(field: StaticString, count: Int, max: Int)

    public static func == (a: RTPError, b: RTPError) -> Bool {
        switch (a, b) {
        case let (.truncated(a1, a2), .truncated(b1, b2)): return a1 == b1 && a2 == b2
        case let (.badVersion(x), .badVersion(y)): return x == y
        case let (.badPadding(a1, a2), .badPadding(b1, b2)): return a1 == b1 && a2 == b2
        case let (.badHeaderExtension(x), .badHeaderExtension(y)): return x == y
        case let (.unencodableHeaderExtension(a1, a2), .unencodableHeaderExtension(b1, b2)): return a1 == b1 && a2 == b2
        case let (.badRTCPLength(a1, a2), .badRTCPLength(b1, b2)): return a1 == b1 && a2 == b2
        case let (.unexpectedPacketType(a1, a2), .unexpectedPacketType(b1, b2)): return a1 == b1 && a2 == b2
        case let (.badRTCPBody(a1, a2), .badRTCPBody(b1, b2)): return a1 == b1 && "\(a2)" == "\(b2)"
        case let (.bufferTooSmall(a1, a2), .bufferTooSmall(b1, b2)): return a1 == b1 && a2 == b2
        case let (.tooMany(a1, a2, a3), .tooMany(b1, b2, b3)): return "\(a1)" == "\(b1)" && a2 == b2 && a3 == b3
        default: return false
        }
    }
}
