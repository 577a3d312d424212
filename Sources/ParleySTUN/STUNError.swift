/// The one error type of ParleySTUN.
public enum STUNError: Error, Equatable, Sendable {
    /// Not a STUN message at all (RFC 8489 §6: leading bits, cookie, length). Drop silently.
    case notSTUN(reason: StaticString)
    /// Fewer bytes than the structure needs.
    case truncated(need: Int, have: Int)
    /// An attribute runs past the message or has a bad length for its type.
    case badAttribute(type: UInt16, offset: Int)
    /// FINGERPRINT present but wrong (RFC 8489 §14.7). Drop silently.
    case badFingerprint
    /// Destination buffer too small.
    case bufferTooSmall(need: Int, have: Int)
    /// Message is not a request (responses and indications are not answered).
    case notARequest

    public static func == (a: STUNError, b: STUNError) -> Bool {
        switch (a, b) {
        case let (.notSTUN(x), .notSTUN(y)): return "\(x)" == "\(y)"
        case let (.truncated(a1, a2), .truncated(b1, b2)): return a1 == b1 && a2 == b2
        case let (.badAttribute(a1, a2), .badAttribute(b1, b2)): return a1 == b1 && a2 == b2
        case (.badFingerprint, .badFingerprint), (.notARequest, .notARequest): return true
        case let (.bufferTooSmall(a1, a2), .bufferTooSmall(b1, b2)): return a1 == b1 && a2 == b2
        default: return false
        }
    }
}
