import ParleyCore

/// Builds a STUN message directly in a caller-provided buffer (no
/// allocation). The header's length field is kept current after every
/// append, so MESSAGE-INTEGRITY and FINGERPRINT can be computed in place.
///
///     var w = try STUNMessageWriter(into: out, type: .bindingSuccess, transactionID: id)
///     try w.appendXORMappedAddress(source)
///     try w.appendMessageIntegrity(key: password)
///     try w.appendFingerprint()
///     send(out[0..<w.count])
public struct STUNMessageWriter {
    public let buffer: UnsafeMutableRawBufferPointer
    public let transactionID: STUNTransactionID
    /// Bytes written so far (header included).
    public private(set) var count: Int
    /// Byte used to pad attribute values to 4 bytes. RFC 8489 §14 lets it be
    /// anything; 0 by default (RFC 5769's vectors use 0x20).
    public var paddingByte: UInt8 = 0

    public init(into buffer: UnsafeMutableRawBufferPointer, type: STUNMessageType,
                transactionID: STUNTransactionID) throws(STUNError) {
        guard buffer.count >= STUN.headerSize else { throw .bufferTooSmall(need: STUN.headerSize, have: buffer.count) }
        self.buffer = buffer
        self.transactionID = transactionID
        buffer.put16(type.rawValue, at: 0)
        buffer.put16(0, at: 2)
        buffer.put32(STUN.magicCookie, at: 4)
        transactionID.write(buffer, at: 8)
        count = STUN.headerSize
    }

    /// The message written so far.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<count]) }

    /// Reserves an attribute of `length` value bytes, lets `fill` write the
    /// value (it gets exactly `length` bytes), pads, and updates the length.
    public mutating func appendAttribute(_ type: STUNAttributeType, length: Int,
                                         _ fill: (UnsafeMutableRawBufferPointer) -> Void) throws(STUNError) {
        guard length <= Int(UInt16.max) else { throw .badAttribute(type: type.rawValue, offset: count) }
        let end = count + 4 + padded4(length)
        guard end <= buffer.count else { throw .bufferTooSmall(need: end, have: buffer.count) }
        guard end - STUN.headerSize <= Int(UInt16.max) else { throw .bufferTooSmall(need: end, have: STUN.headerSize + 0xFFFF) }
        buffer.put16(type.rawValue, at: count)
        buffer.put16(UInt16(length), at: count + 2)
        fill(UnsafeMutableRawBufferPointer(rebasing: buffer[(count + 4)..<(count + 4 + length)]))
        for i in (count + 4 + length)..<end { buffer[i] = paddingByte }
        count = end
        buffer.put16(UInt16(count - STUN.headerSize), at: 2)
    }

    public mutating func append(_ type: STUNAttributeType, bytes: UnsafeRawBufferPointer) throws(STUNError) {
        try appendAttribute(type, length: bytes.count) { $0.copyMemory(from: bytes) }
    }

    public mutating func append(_ type: STUNAttributeType, bytes: [UInt8]) throws(STUNError) {
        let r: Result<Void, STUNError> = bytes.withUnsafeBytes { b in
            Result { () throws(STUNError) in try append(type, bytes: b) }
        }
        try r.get()
    }

    public mutating func append(_ type: STUNAttributeType, uint32 v: UInt32) throws(STUNError) {
        try appendAttribute(type, length: 4) { $0.put32(v, at: 0) }
    }

    public mutating func append(_ type: STUNAttributeType, uint64 v: UInt64) throws(STUNError) {
        try appendAttribute(type, length: 8) { $0.put64(v, at: 0) }
    }

    /// XOR-MAPPED-ADDRESS (§14.2).
    public mutating func appendXORMappedAddress(_ a: STUNAddress) throws(STUNError) {
        let t = transactionID
        try appendAttribute(.xorMappedAddress, length: a.encodedSize) { a.writeXOR($0, at: 0, transactionID: t) }
    }

    /// MAPPED-ADDRESS (§14.1), for RFC 3489 clients.
    public mutating func appendMappedAddress(_ a: STUNAddress) throws(STUNError) {
        try appendAttribute(.mappedAddress, length: a.encodedSize) { a.writePlain($0, at: 0) }
    }

    /// USE-CANDIDATE (RFC 8445 §16.1): a flag with no value.
    public mutating func appendUseCandidate() throws(STUNError) {
        try appendAttribute(.useCandidate, length: 0) { _ in }
    }

    // ERROR-CODE, §14.8:
    //
    // |           Reserved, should be 0         |Class|     Number    |
    // |      Reason Phrase (variable)                                ..

    /// ERROR-CODE with a reason phrase (§14.8); `code` is 300...699.
    public mutating func appendErrorCode(_ code: Int, reason: StaticString) throws(STUNError) {
        precondition((300...699).contains(code), "STUN error codes are 300-699")
        let phrase = UnsafeRawBufferPointer(start: reason.utf8Start, count: reason.utf8CodeUnitCount)
        try appendAttribute(.errorCode, length: 4 + phrase.count) { v in
            v[0] = 0
            v[1] = 0
            v[2] = UInt8(code / 100)
            v[3] = UInt8(code % 100)
            UnsafeMutableRawBufferPointer(rebasing: v[4...]).copyMemory(from: phrase)
        }
    }

    /// UNKNOWN-ATTRIBUTES (§14.9) listing the types `message` has but this
    /// implementation does not understand.
    public mutating func appendUnknownAttributes(of message: STUNMessageView) throws(STUNError) {
        var n = 0
        message.forEachUnknownRequiredAttribute { _ in n += 1 }
        try appendAttribute(.unknownAttributes, length: 2 * n) { v in
            var i = 0
            message.forEachUnknownRequiredAttribute { t in
                v.put16(t, at: i)
                i += 2
            }
        }
    }

    /// MESSAGE-INTEGRITY (§14.5): HMAC-SHA1 with `key` over the message so far.
    public mutating func appendMessageIntegrity(key: UnsafeRawBufferPointer) throws(STUNError) {
        try appendIntegrity(key: key, sha256: false)
    }

    /// MESSAGE-INTEGRITY-SHA256 (§14.6), full 32 bytes.
    public mutating func appendMessageIntegritySHA256(key: UnsafeRawBufferPointer) throws(STUNError) {
        try appendIntegrity(key: key, sha256: true)
    }

    public mutating func appendMessageIntegrity(key: [UInt8], sha256: Bool = false) throws(STUNError) {
        let r: Result<Void, STUNError> = key.withUnsafeBytes { k in
            Result { () throws(STUNError) in try appendIntegrity(key: k, sha256: sha256) }
        }
        try r.get()
    }

    mutating func appendIntegrity(key: UnsafeRawBufferPointer, sha256: Bool) throws(STUNError) {
        let size = sha256 ? STUN.sha256Size : STUN.sha1Size
        let start = count
        let end = start + 4 + size
        guard end <= buffer.count else { throw .bufferTooSmall(need: end, have: buffer.count) }
        // The length field must already count this attribute (§14.5).
        buffer.put16(UInt16(end - STUN.headerSize), at: 2)
        buffer.put16((sha256 ? STUNAttributeType.messageIntegritySHA256 : .messageIntegrity).rawValue, at: start)
        buffer.put16(UInt16(size), at: start + 2)
        STUNIntegrity.hmac(sha256: sha256, key: key, UnsafeRawBufferPointer(rebasing: buffer[0..<start]),
                           into: UnsafeMutableRawBufferPointer(rebasing: buffer[(start + 4)..<end]))
        count = end
    }

    /// FINGERPRINT (§14.7); must be the last attribute.
    public mutating func appendFingerprint() throws(STUNError) {
        let start = count
        let end = start + 8
        guard end <= buffer.count else { throw .bufferTooSmall(need: end, have: buffer.count) }
        buffer.put16(UInt16(end - STUN.headerSize), at: 2)
        buffer.put16(STUNAttributeType.fingerprint.rawValue, at: start)
        buffer.put16(4, at: start + 2)
        let crc = STUNIntegrity.fingerprint(UnsafeRawBufferPointer(rebasing: buffer[0..<end]), attributeOffset: start)
        buffer.put32(crc, at: start + 4)
        count = end
    }
}
