import ParleyCore

// RTP fixed header, RFC 3550 §5.1:
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |V=2|P|X|  CC   |M|     PT      |       sequence number         |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                           timestamp                           |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           synchronization source (SSRC) identifier            |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |            contributing source (CSRC) identifiers             |
// |                             ....                              |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Header extension, RFC 3550 §5.3.1 (present when X = 1):
//
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |      defined by profile       |           length              |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                        header extension                       |
// |                             ....                              |
//
// `length` counts 32-bit words of the extension body. RFC 8285 defines two
// element formats inside the body, picked by the profile field:
//
// one-byte (profile 0xBEDE), §4.2:      two-byte (profile 0x100X), §4.3:
//  0 1 2 3 4 5 6 7                       0                   1
// +-+-+-+-+-+-+-+-+                      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
// |  ID   |  len  |  data (len+1 bytes)  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// +-+-+-+-+-+-+-+-+                      |       ID      |     length    |  data (length bytes)
//                                        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// A zero byte between elements is padding; in the one-byte form ID 15
// stops parsing of the rest of the block (§4.2).

/// Named constants of the RTP wire format.
public enum RTP {
    /// The only RTP version in use (RFC 3550 §5.1).
    public static let version: UInt8 = 2
    /// Fixed header size before CSRCs.
    public static let fixedHeaderSize = 12
    /// RFC 8285 §4.2 one-byte header profile.
    public static let oneByteExtensionProfile: UInt16 = 0xBEDE
    /// RFC 8285 §4.3 two-byte header profile (low 4 bits are "appbits").
    public static let twoByteExtensionProfile: UInt16 = 0x1000

    static let versionShift: UInt8 = 6
    static let paddingBit: UInt8 = 0x20
    static let extensionBit: UInt8 = 0x10
    static let csrcCountMask: UInt8 = 0x0F
    static let markerBit: UInt8 = 0x80
    static let payloadTypeMask: UInt8 = 0x7F
    static let sequenceOffset = 2
    static let timestampOffset = 4
    static let ssrcOffset = 8
    static let csrcOffset = 12
    static let oneByteStopID: UInt8 = 15
}

/// The element format of an RTP header extension block.
public enum RTPHeaderExtensionFormat: Sendable, Equatable {
    /// RFC 8285 §4.2 (profile 0xBEDE).
    case oneByte
    /// RFC 8285 §4.3 (profile 0x1000–0x100F).
    case twoByte
    /// Any other profile: the body is opaque.
    case opaque

    public init(profile: UInt16) {
        if profile == RTP.oneByteExtensionProfile {
            self = .oneByte
        } else if profile & 0xFFF0 == RTP.twoByteExtensionProfile {
            self = .twoByte
        } else {
            self = .opaque
        }
    }
}

/// One RFC 8285 element, borrowed from the packet bytes.
public struct RTPHeaderExtensionElement {
    public let id: UInt8
    public let data: UnsafeRawBufferPointer
}

/// Iterates the RFC 8285 elements of a header extension body without copying.
/// The body was validated when the packet was parsed, so iteration cannot fail.
public struct RTPHeaderExtensionElements: Sequence, IteratorProtocol {
    let body: UnsafeRawBufferPointer
    let format: RTPHeaderExtensionFormat
    var offset = 0

    init(body: UnsafeRawBufferPointer, format: RTPHeaderExtensionFormat) {
        self.body = body
        self.format = format
    }

    public mutating func next() -> RTPHeaderExtensionElement? {
        switch RTPHeaderExtensionElements.step(body, format, offset) {
        case .end, .malformed:
            offset = body.count
            return nil
        case let .element(id, range, next):
            offset = next
            return RTPHeaderExtensionElement(id: id, data: body.slice(range))
        }
    }

    enum Step { case end, malformed(Int), element(UInt8, Range<Int>, Int) }

    /// Finds the element at or after `offset`, skipping padding (RFC 8285 §4.2/§4.3).
    static func step(_ body: UnsafeRawBufferPointer, _ format: RTPHeaderExtensionFormat, _ start: Int) -> Step {
        var off = start
        switch format {
        case .opaque:
            return .end
        case .oneByte:
            while off < body.count {
                let b = body[off]
                // ID 0 is reserved for padding (§4.2); skip such a byte whatever its length bits.
                if b >> 4 == 0 { off += 1; continue }
                let id = b >> 4
                if id == RTP.oneByteStopID { return .end }
                let len = Int(b & 0x0F) + 1
                guard off + 1 + len <= body.count else { return .malformed(off) }
                return .element(id, (off + 1)..<(off + 1 + len), off + 1 + len)
            }
            return .end
        case .twoByte:
            while off < body.count {
                let id = body[off]
                if id == 0 { off += 1; continue }
                guard off + 2 <= body.count else { return .malformed(off) }
                let len = Int(body[off + 1])
                guard off + 2 + len <= body.count else { return .malformed(off) }
                return .element(id, (off + 2)..<(off + 2 + len), off + 2 + len)
            }
            return .end
        }
    }
}

/// A parsed RTP packet: a view over the caller's bytes (no copy). Valid only
/// while those bytes are. Parsing validates every length, so accessors never trap.
public struct RTPPacketView {
    /// The whole packet.
    public let bytes: UnsafeRawBufferPointer
    /// Bytes before the payload: fixed header, CSRCs and extension.
    public let headerSize: Int
    /// Padding bytes at the end (0 when P = 0).
    public let paddingSize: Int
    /// Offset of the extension body (after profile/length), or nil if X = 0.
    let extensionBodyOffset: Int?

    /// Parses and validates an RTP packet (RFC 3550 §5.1, §5.3.1; RFC 8285).
    public init(parsing bytes: UnsafeRawBufferPointer) throws(RTPError) {
        guard bytes.count >= RTP.fixedHeaderSize else {
            throw .truncated(need: RTP.fixedHeaderSize, have: bytes.count)
        }
        let b0 = bytes[0]
        let version = b0 >> RTP.versionShift
        guard version == RTP.version else { throw .badVersion(version) }
        var offset = RTP.csrcOffset + 4 * Int(b0 & RTP.csrcCountMask)
        guard bytes.count >= offset else { throw .truncated(need: offset, have: bytes.count) }
        var extOffset: Int?
        if b0 & RTP.extensionBit != 0 {
            guard bytes.count >= offset + 4 else { throw .truncated(need: offset + 4, have: bytes.count) }
            let profile = bytes.u16(offset)
            let words = Int(bytes.u16(offset + 2))
            let bodyStart = offset + 4
            offset = bodyStart + 4 * words
            guard bytes.count >= offset else { throw .truncated(need: offset, have: bytes.count) }
            // Validate the element structure once so iteration cannot fail.
            let body = bytes.slice(bodyStart..<offset)
            let format = RTPHeaderExtensionFormat(profile: profile)
            var at = 0
            loop: while true {
                switch RTPHeaderExtensionElements.step(body, format, at) {
                case .end: break loop
                case let .malformed(o): throw .badHeaderExtension(offset: bodyStart + o)
                case let .element(_, _, next): at = next
                }
            }
            extOffset = bodyStart
        }
        var padding = 0
        if b0 & RTP.paddingBit != 0 {
            let available = bytes.count - offset
            guard available > 0 else { throw .badPadding(count: 0, available: 0) }
            padding = Int(bytes[bytes.count - 1])
            guard padding >= 1, padding <= available else {
                throw .badPadding(count: padding, available: available)
            }
        }
        self.bytes = bytes
        self.headerSize = offset
        self.paddingSize = padding
        self.extensionBodyOffset = extOffset
    }

    @inlinable public var version: UInt8 { bytes[0] >> 6 }
    public var hasPadding: Bool { bytes[0] & RTP.paddingBit != 0 }
    public var hasExtension: Bool { bytes[0] & RTP.extensionBit != 0 }
    public var csrcCount: Int { Int(bytes[0] & RTP.csrcCountMask) }
    public var marker: Bool { bytes[1] & RTP.markerBit != 0 }
    public var payloadType: UInt8 { bytes[1] & RTP.payloadTypeMask }
    public var sequenceNumber: UInt16 { bytes.u16(RTP.sequenceOffset) }
    public var timestamp: UInt32 { bytes.u32(RTP.timestampOffset) }
    public var ssrc: UInt32 { bytes.u32(RTP.ssrcOffset) }

    /// The CSRC at `index` (0 ..< csrcCount).
    public func csrc(at index: Int) -> UInt32 {
        precondition(index >= 0 && index < csrcCount, "CSRC index out of range")
        return bytes.u32(RTP.csrcOffset + 4 * index)
    }

    /// The "defined by profile" field, or nil when X = 0.
    public var extensionProfile: UInt16? {
        guard let body = extensionBodyOffset else { return nil }
        return bytes.u16(body - 4)
    }

    /// The raw extension body (after profile and length), empty when X = 0.
    public var extensionBody: UnsafeRawBufferPointer {
        guard let body = extensionBodyOffset else { return bytes.slice(0..<0) }
        return bytes.slice(body..<headerSize)
    }

    /// RFC 8285 elements (empty for opaque profiles or X = 0).
    public var extensions: RTPHeaderExtensionElements {
        let format = extensionProfile.map(RTPHeaderExtensionFormat.init(profile:)) ?? .opaque
        return RTPHeaderExtensionElements(body: extensionBody, format: format)
    }

    /// The data of the first RFC 8285 element with this id, if present.
    public func extensionElement(id: UInt8) -> UnsafeRawBufferPointer? {
        for e in extensions where e.id == id { return e.data }
        return nil
    }

    /// The payload, without padding.
    public var payload: UnsafeRawBufferPointer { bytes.slice(headerSize..<(bytes.count - paddingSize)) }
    /// Byte range of the payload in `bytes`.
    public var payloadRange: Range<Int> { headerSize..<(bytes.count - paddingSize) }
}

/// One RFC 8285 element, owned (for building).
public struct RTPHeaderExtension: Equatable, Sendable {
    public var id: UInt8
    public var data: [UInt8]
    public init(id: UInt8, data: [UInt8]) {
        self.id = id
        self.data = data
    }
}

/// An RTP header as values, for building packets (and for comparing parses).
/// Building with no CSRCs and no extensions does not allocate.
public struct RTPHeader: Equatable, Sendable {
    public var padding: Bool
    public var marker: Bool
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    public var csrcs: [UInt32]
    /// The extension profile; nil means no extension (X = 0).
    public var extensionProfile: UInt16?
    /// RFC 8285 elements, used when the profile is one-byte or two-byte.
    public var extensions: [RTPHeaderExtension]
    /// The raw body for other profiles (padded to 4 bytes on write).
    public var extensionData: [UInt8]

    public init(padding: Bool = false, marker: Bool = false, payloadType: UInt8, sequenceNumber: UInt16,
                timestamp: UInt32, ssrc: UInt32, csrcs: [UInt32] = [], extensionProfile: UInt16? = nil,
                extensions: [RTPHeaderExtension] = [], extensionData: [UInt8] = []) {
        self.padding = padding
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.extensionProfile = extensionProfile
        self.extensions = extensions
        self.extensionData = extensionData
    }

    /// Copies the header fields out of a parsed packet.
    public init(_ view: RTPPacketView) {
        var csrcs: [UInt32] = []
        csrcs.reserveCapacity(view.csrcCount)
        for i in 0..<view.csrcCount { csrcs.append(view.csrc(at: i)) }
        var exts: [RTPHeaderExtension] = []
        var data: [UInt8] = []
        if let profile = view.extensionProfile {
            if RTPHeaderExtensionFormat(profile: profile) == .opaque {
                data = Array(view.extensionBody)
            } else {
                for e in view.extensions { exts.append(RTPHeaderExtension(id: e.id, data: Array(e.data))) }
            }
        }
        self.init(padding: view.hasPadding, marker: view.marker, payloadType: view.payloadType,
                  sequenceNumber: view.sequenceNumber, timestamp: view.timestamp, ssrc: view.ssrc,
                  csrcs: csrcs, extensionProfile: view.extensionProfile, extensions: exts, extensionData: data)
    }

    var extensionBodySize: Int {
        guard let profile = extensionProfile else { return 0 }
        switch RTPHeaderExtensionFormat(profile: profile) {
        case .oneByte: return padded4(extensions.reduce(0) { $0 + 1 + $1.data.count })
        case .twoByte: return padded4(extensions.reduce(0) { $0 + 2 + $1.data.count })
        case .opaque: return padded4(extensionData.count)
        }
    }

    /// Bytes `write(into:)` produces.
    public var encodedSize: Int {
        RTP.fixedHeaderSize + 4 * csrcs.count + (extensionProfile == nil ? 0 : 4 + extensionBodySize)
    }

    /// Writes the header at the start of `buffer`; returns the bytes written.
    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        guard csrcs.count <= 15 else { throw .tooMany(field: "CSRC", count: csrcs.count, max: 15) }
        guard payloadType <= 127 else { throw .tooMany(field: "payload type", count: Int(payloadType), max: 127) }
        let size = encodedSize
        guard buffer.count >= size else { throw .bufferTooSmall(need: size, have: buffer.count) }
        let body = extensionBodySize
        guard body / 4 <= Int(UInt16.max) else { throw .tooMany(field: "extension words", count: body / 4, max: 65535) }
        var b0 = RTP.version << RTP.versionShift | UInt8(csrcs.count)
        if padding { b0 |= RTP.paddingBit }
        if extensionProfile != nil { b0 |= RTP.extensionBit }
        buffer[0] = b0
        buffer[1] = (marker ? RTP.markerBit : 0) | payloadType
        buffer.put16(sequenceNumber, at: RTP.sequenceOffset)
        buffer.put32(timestamp, at: RTP.timestampOffset)
        buffer.put32(ssrc, at: RTP.ssrcOffset)
        var off = RTP.csrcOffset
        for c in csrcs {
            buffer.put32(c, at: off)
            off += 4
        }
        guard let profile = extensionProfile else { return off }
        buffer.put16(profile, at: off)
        buffer.put16(UInt16(body / 4), at: off + 2)
        off += 4
        let end = off + body
        switch RTPHeaderExtensionFormat(profile: profile) {
        case .oneByte:
            for e in extensions {
                guard e.id >= 1, e.id <= 14, e.data.count >= 1, e.data.count <= 16 else {
                    throw .unencodableHeaderExtension(id: e.id, length: e.data.count)
                }
                buffer[off] = e.id << 4 | UInt8(e.data.count - 1)
                buffer.putBytes(e.data, at: off + 1)
                off += 1 + e.data.count
            }
        case .twoByte:
            for e in extensions {
                guard e.id >= 1, e.data.count <= 255 else {
                    throw .unencodableHeaderExtension(id: e.id, length: e.data.count)
                }
                buffer[off] = e.id
                buffer[off + 1] = UInt8(e.data.count)
                buffer.putBytes(e.data, at: off + 2)
                off += 2 + e.data.count
            }
        case .opaque:
            buffer.putBytes(extensionData, at: off)
            off += extensionData.count
        }
        buffer.zero(off..<end)
        return end
    }
}

/// An RTP packet as values: header, payload and padding. For building and
/// for tests; the packet path uses `RTPPacketView` and `RTPRewrite`.
public struct RTPPacket: Equatable, Sendable {
    public var header: RTPHeader
    public var payload: [UInt8]
    /// Padding bytes to append (0 ... 255); the P bit follows this.
    public var paddingSize: UInt8

    public init(header: RTPHeader, payload: [UInt8], paddingSize: UInt8 = 0) {
        self.header = header
        self.payload = payload
        self.paddingSize = paddingSize
    }

    public init(_ view: RTPPacketView) {
        self.init(header: RTPHeader(view), payload: Array(view.payload), paddingSize: UInt8(view.paddingSize))
    }

    public init(parsing bytes: UnsafeRawBufferPointer) throws(RTPError) {
        self.init(try RTPPacketView(parsing: bytes))
    }

    public var encodedSize: Int { header.encodedSize + payload.count + Int(paddingSize) }

    /// Writes the packet; returns the bytes written.
    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        guard buffer.count >= size else { throw .bufferTooSmall(need: size, have: buffer.count) }
        var h = header
        h.padding = paddingSize > 0
        var off = try h.write(into: buffer)
        buffer.putBytes(payload, at: off)
        off += payload.count
        if paddingSize > 0 {
            buffer.zero(off..<(off + Int(paddingSize) - 1))
            buffer[off + Int(paddingSize) - 1] = paddingSize
            off += Int(paddingSize)
        }
        return off
    }

    /// The encoded packet as a new array (allocates; for tests and tools).
    public func encoded() throws(RTPError) -> [UInt8] {
        try encodeToArray(size: encodedSize) { (b) throws(RTPError) in try write(into: b) }
    }
}

/// In-place rewrites of an RTP header inside a packet buffer, for the relay
/// (SSRC/sequence/payload-type rewriting when forwarding). The buffer must
/// hold at least the 12-byte fixed header; callers parse first.
public enum RTPRewrite {
    @inline(__always) static func check(_ b: UnsafeMutableRawBufferPointer) {
        precondition(b.count >= RTP.fixedHeaderSize, "RTPRewrite on a buffer shorter than an RTP header")
    }

    public static func setSSRC(_ ssrc: UInt32, in packet: UnsafeMutableRawBufferPointer) {
        check(packet)
        packet.put32(ssrc, at: RTP.ssrcOffset)
    }

    public static func setSequenceNumber(_ seq: UInt16, in packet: UnsafeMutableRawBufferPointer) {
        check(packet)
        packet.put16(seq, at: RTP.sequenceOffset)
    }

    public static func setTimestamp(_ ts: UInt32, in packet: UnsafeMutableRawBufferPointer) {
        check(packet)
        packet.put32(ts, at: RTP.timestampOffset)
    }

    /// Sets the 7-bit payload type, keeping the marker bit.
    public static func setPayloadType(_ pt: UInt8, in packet: UnsafeMutableRawBufferPointer) {
        check(packet)
        precondition(pt <= 127, "payload type is 7 bits")
        packet[1] = (packet[1] & RTP.markerBit) | pt
    }

    public static func setMarker(_ marker: Bool, in packet: UnsafeMutableRawBufferPointer) {
        check(packet)
        packet[1] = marker ? packet[1] | RTP.markerBit : packet[1] & RTP.payloadTypeMask
    }
}
