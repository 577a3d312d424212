import ParleyCore

// STUN message header, RFC 8489 §5:
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |0 0|     STUN Message Type     |         Message Length        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                         Magic Cookie                          |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                                                               |
// |                     Transaction ID (96 bits)                  |
// |                                                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Message type, §5 (method bits M, class bits C interleaved):
//
//  0                 1
//  2  3  4 5 6 7 8 9 0 1 2 3 4 5
// +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
// |M |M |M|M|M|C|M|M|M|C|M|M|M|M|
// |11|10|9|8|7|1|6|5|4|0|3|2|1|0|
// +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Attributes follow the header as TLVs, §14:
//
// |         Type                  |            Length             |
// |                         Value (variable)                ....
//
// Length excludes padding; each attribute is padded to 4 bytes.

/// Named constants of the STUN wire format.
public enum STUN {
    /// RFC 8489 §5.
    public static let magicCookie: UInt32 = 0x2112_A442
    public static let headerSize = 20
    public static let attributeHeaderSize = 4
    /// RFC 8489 §14.7: CRC-32 of the message XOR this.
    public static let fingerprintXOR: UInt32 = 0x5354_554E
    /// Binding method (RFC 8489 §18.2).
    public static let bindingMethod: UInt16 = 0x001
    static let sha1Size = 20
    static let sha256Size = 32
}

/// A STUN attribute type (RFC 8489 §18.3, RFC 8445 §16.1).
public struct STUNAttributeType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    public static let mappedAddress = STUNAttributeType(0x0001)
    public static let username = STUNAttributeType(0x0006)
    public static let messageIntegrity = STUNAttributeType(0x0008)
    public static let errorCode = STUNAttributeType(0x0009)
    public static let unknownAttributes = STUNAttributeType(0x000A)
    public static let realm = STUNAttributeType(0x0014)
    public static let nonce = STUNAttributeType(0x0015)
    public static let messageIntegritySHA256 = STUNAttributeType(0x001C)
    public static let passwordAlgorithm = STUNAttributeType(0x001D)
    public static let userhash = STUNAttributeType(0x001E)
    public static let xorMappedAddress = STUNAttributeType(0x0020)
    public static let priority = STUNAttributeType(0x0024)
    public static let useCandidate = STUNAttributeType(0x0025)
    public static let passwordAlgorithms = STUNAttributeType(0x8002)
    public static let alternateDomain = STUNAttributeType(0x8003)
    public static let software = STUNAttributeType(0x8022)
    public static let alternateServer = STUNAttributeType(0x8023)
    public static let fingerprint = STUNAttributeType(0x8028)
    public static let iceControlled = STUNAttributeType(0x8029)
    public static let iceControlling = STUNAttributeType(0x802A)

    /// 0x0000–0x7FFF must be understood by the receiver (RFC 8489 §14).
    public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    /// The comprehension-required types this implementation processes or
    /// knowingly ignores; any other one in a request earns a 420.
    public var isUnderstood: Bool {
        switch self {
        case .mappedAddress, .username, .messageIntegrity, .errorCode, .unknownAttributes, .realm, .nonce,
             .messageIntegritySHA256, .passwordAlgorithm, .userhash, .xorMappedAddress, .priority, .useCandidate:
            return true
        default:
            return !isComprehensionRequired
        }
    }
}

/// STUN message class (RFC 8489 §5).
public enum STUNClass: UInt8, Sendable {
    case request = 0b00
    case indication = 0b01
    case successResponse = 0b10
    case errorResponse = 0b11
}

/// STUN message type: 12-bit method + class.
public struct STUNMessageType: Hashable, Sendable {
    public var method: UInt16
    public var messageClass: STUNClass

    public init(method: UInt16, messageClass: STUNClass) {
        self.method = method & 0x0FFF
        self.messageClass = messageClass
    }

    public init(rawValue t: UInt16) {
        method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80)
        messageClass = STUNClass(rawValue: UInt8(((t >> 4) & 1) | ((t >> 7) & 2)))!
    }

    public var rawValue: UInt16 {
        let m = method, c = UInt16(messageClass.rawValue)
        return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    }

    public static let bindingRequest = STUNMessageType(method: STUN.bindingMethod, messageClass: .request)
    public static let bindingSuccess = STUNMessageType(method: STUN.bindingMethod, messageClass: .successResponse)
    public static let bindingError = STUNMessageType(method: STUN.bindingMethod, messageClass: .errorResponse)
    public static let bindingIndication = STUNMessageType(method: STUN.bindingMethod, messageClass: .indication)
}

/// The 96-bit transaction ID (RFC 8489 §5), as three big-endian words.
public struct STUNTransactionID: Hashable, Sendable {
    public var w0: UInt32, w1: UInt32, w2: UInt32

    public init(_ w0: UInt32, _ w1: UInt32, _ w2: UInt32) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
    }

    /// A fresh random ID (RFC 8489 §5: uniformly random).
    public static func random() -> STUNTransactionID {
        var g = SystemRandomNumberGenerator()
        return STUNTransactionID(g.next(), g.next(), g.next())
    }

    init(_ b: UnsafeRawBufferPointer, at o: Int) {
        self.init(b.u32(o), b.u32(o + 4), b.u32(o + 8))
    }

    func write(_ b: UnsafeMutableRawBufferPointer, at o: Int) {
        b.put32(w0, at: o)
        b.put32(w1, at: o + 4)
        b.put32(w2, at: o + 8)
    }
}

/// One attribute, borrowed from the message bytes.
public struct STUNAttributeView {
    public let type: STUNAttributeType
    /// The value, without padding.
    public let value: UnsafeRawBufferPointer
    /// Offset of the attribute header inside the message.
    public let offset: Int
}

/// A parsed STUN message: a view over the caller's bytes (no copy). Valid
/// while those bytes are. Parsing validates the header and every TLV length.
public struct STUNMessageView {
    public let bytes: UnsafeRawBufferPointer
    public let type: STUNMessageType
    public let transactionID: STUNTransactionID
    /// Offsets of the first MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and
    /// FINGERPRINT attribute headers, if present.
    public let messageIntegrityOffset: Int?
    public let messageIntegritySHA256Offset: Int?
    public let fingerprintOffset: Int?

    /// Quick RFC 7983/8489 check: could these bytes be STUN (no full parse)?
    public static func looksLikeSTUN(_ b: UnsafeRawBufferPointer) -> Bool {
        b.count >= STUN.headerSize && b[0] & 0xC0 == 0 && b.u32(4) == STUN.magicCookie && b.u16(2) & 3 == 0
    }

    public init(parsing b: UnsafeRawBufferPointer) throws(STUNError) {
        guard b.count >= STUN.headerSize else { throw .truncated(need: STUN.headerSize, have: b.count) }
        guard b[0] & 0xC0 == 0 else { throw .notSTUN(reason: "leading bits are not 00") }
        guard b.u32(4) == STUN.magicCookie else { throw .notSTUN(reason: "no magic cookie") }
        let length = Int(b.u16(2))
        guard length & 3 == 0 else { throw .notSTUN(reason: "length not a multiple of 4") }
        guard STUN.headerSize + length == b.count else { throw .notSTUN(reason: "length disagrees with datagram size") }
        var off = STUN.headerSize
        var mi: Int?, mi256: Int?, fp: Int?
        while off < b.count {
            guard b.count - off >= STUN.attributeHeaderSize else { throw .truncated(need: off + 4, have: b.count) }
            let type = STUNAttributeType(b.u16(off))
            let len = Int(b.u16(off + 2))
            guard off + 4 + len <= b.count else { throw .badAttribute(type: type.rawValue, offset: off) }
            // §14.7: FINGERPRINT is last; anything after it is not a valid message.
            if fp != nil { throw .badAttribute(type: type.rawValue, offset: off) }
            switch type {
            case .messageIntegrity:
                guard len == STUN.sha1Size else { throw .badAttribute(type: type.rawValue, offset: off) }
                if mi == nil { mi = off }
            case .messageIntegritySHA256:
                // §14.6: 16 to 32 bytes, a multiple of 4 (truncation allowed).
                guard len >= 16, len <= STUN.sha256Size, len & 3 == 0 else {
                    throw .badAttribute(type: type.rawValue, offset: off)
                }
                if mi256 == nil { mi256 = off }
            case .fingerprint:
                guard len == 4 else { throw .badAttribute(type: type.rawValue, offset: off) }
                fp = off
            default:
                break
            }
            off += 4 + padded4(len)
        }
        guard off == b.count else { throw .badAttribute(type: 0, offset: off) }
        bytes = b
        type = STUNMessageType(rawValue: b.u16(0))
        transactionID = STUNTransactionID(b, at: 8)
        messageIntegrityOffset = mi
        messageIntegritySHA256Offset = mi256
        fingerprintOffset = fp
    }

    public struct Attributes: Sequence, IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var offset = STUN.headerSize
        public mutating func next() -> STUNAttributeView? {
            guard offset + 4 <= bytes.count else { return nil }
            let len = Int(bytes.u16(offset + 2))
            let a = STUNAttributeView(type: STUNAttributeType(bytes.u16(offset)),
                                      value: bytes.slice((offset + 4)..<(offset + 4 + len)), offset: offset)
            offset += 4 + padded4(len)
            return a
        }
    }

    /// All attributes in order.
    public var attributes: Attributes { Attributes(bytes: bytes) }

    /// The value of the first attribute of `type`.
    public func attribute(_ type: STUNAttributeType) -> UnsafeRawBufferPointer? {
        for a in attributes where a.type == type { return a.value }
        return nil
    }

    /// USERNAME (§14.3), raw UTF-8.
    public var username: UnsafeRawBufferPointer? { attribute(.username) }
    /// SOFTWARE (§14.14), raw UTF-8.
    public var software: UnsafeRawBufferPointer? { attribute(.software) }

    /// XOR-MAPPED-ADDRESS (§14.2), nil when absent; throws when malformed.
    public func xorMappedAddress() throws(STUNError) -> STUNAddress? {
        guard let v = attribute(.xorMappedAddress) else { return nil }
        return try STUNAddress(xorValue: v, transactionID: transactionID, offset: 0)
    }

    /// MAPPED-ADDRESS (§14.1), nil when absent; throws when malformed.
    public func mappedAddress() throws(STUNError) -> STUNAddress? {
        guard let v = attribute(.mappedAddress) else { return nil }
        return try STUNAddress(plainValue: v, offset: 0)
    }

    /// ERROR-CODE (§14.8): the code (300–699) and the reason phrase bytes.
    public func errorCode() throws(STUNError) -> (code: Int, reason: UnsafeRawBufferPointer)? {
        guard let v = attribute(.errorCode) else { return nil }
        guard v.count >= 4 else { throw .badAttribute(type: STUNAttributeType.errorCode.rawValue, offset: 0) }
        return (Int(v[2] & 0x07) * 100 + Int(v[3]), v.slice(4..<v.count))
    }

    /// PRIORITY (RFC 8445 §16.1).
    public var priority: UInt32? {
        guard let v = attribute(.priority), v.count == 4 else { return nil }
        return v.u32(0)
    }

    /// USE-CANDIDATE present (RFC 8445 §16.1).
    public var useCandidate: Bool { attribute(.useCandidate) != nil }

    /// ICE-CONTROLLING tie-breaker (RFC 8445 §16.1).
    public var iceControlling: UInt64? {
        guard let v = attribute(.iceControlling), v.count == 8 else { return nil }
        return v.u64(0)
    }

    /// ICE-CONTROLLED tie-breaker (RFC 8445 §16.1).
    public var iceControlled: UInt64? {
        guard let v = attribute(.iceControlled), v.count == 8 else { return nil }
        return v.u64(0)
    }

    /// Calls `body` for each comprehension-required attribute type this
    /// implementation does not understand (RFC 8489 §6.3.1 → 420).
    public func forEachUnknownRequiredAttribute(_ body: (UInt16) -> Void) {
        for a in attributes where !a.type.isUnderstood { body(a.type.rawValue) }
    }

    public var hasUnknownRequiredAttributes: Bool {
        for a in attributes where !a.type.isUnderstood { return true }
        return false
    }

    /// FINGERPRINT check (§14.7). False when absent or wrong.
    public func verifyFingerprint() -> Bool {
        guard let fp = fingerprintOffset else { return false }
        return STUNIntegrity.fingerprint(bytes, attributeOffset: fp) == bytes.u32(fp + 4)
    }

    /// MESSAGE-INTEGRITY check (§14.5) with the HMAC key (the password for
    /// short-term credentials, §9.1.1). False when absent or wrong.
    public func verifyMessageIntegrity(key: UnsafeRawBufferPointer) -> Bool {
        guard let mi = messageIntegrityOffset else { return false }
        return STUNIntegrity.verify(bytes, attributeOffset: mi, key: key, sha256: false)
    }

    /// MESSAGE-INTEGRITY-SHA256 check (§14.6). False when absent or wrong.
    public func verifyMessageIntegritySHA256(key: UnsafeRawBufferPointer) -> Bool {
        guard let mi = messageIntegritySHA256Offset else { return false }
        return STUNIntegrity.verify(bytes, attributeOffset: mi, key: key, sha256: true)
    }
}

/// One attribute, owned (for tests, fuzzing and tools).
public struct STUNAttribute: Equatable, Sendable {
    public var type: STUNAttributeType
    public var value: [UInt8]
    public init(type: STUNAttributeType, value: [UInt8]) {
        self.type = type
        self.value = value
    }
}

/// A STUN message as values. The packet path uses `STUNMessageView` and
/// `STUNMessageWriter`; this is the symmetric pair for tests and tools.
public struct STUNMessage: Equatable, Sendable {
    public var type: STUNMessageType
    public var transactionID: STUNTransactionID
    public var attributes: [STUNAttribute]

    public init(type: STUNMessageType, transactionID: STUNTransactionID, attributes: [STUNAttribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
    }

    public init(_ view: STUNMessageView) {
        self.init(type: view.type, transactionID: view.transactionID,
                  attributes: view.attributes.map { STUNAttribute(type: $0.type, value: Array($0.value)) })
    }

    public init(parsing bytes: UnsafeRawBufferPointer) throws(STUNError) {
        self.init(try STUNMessageView(parsing: bytes))
    }

    public var encodedSize: Int { STUN.headerSize + attributes.reduce(0) { $0 + 4 + padded4($1.value.count) } }

    /// Writes the message as is (attribute values verbatim, zero padding).
    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(STUNError) -> Int {
        var w = try STUNMessageWriter(into: buffer, type: type, transactionID: transactionID)
        for a in attributes { try w.append(a.type, bytes: a.value) }
        return w.count
    }

    /// The encoded message as a new array (allocates).
    public func encoded() throws(STUNError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: encodedSize)
        let r: Result<Int, STUNError> = out.withUnsafeMutableBytes { b in
            Result { () throws(STUNError) -> Int in try write(into: b) }
        }
        _ = try r.get()
        return out
    }
}
