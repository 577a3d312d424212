import ParleyCore

// RTCP common header, RFC 3550 §6.4.1 (all packet types share it):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |V=2|P|  count  |      PT       |             length            |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// `count` is RC (SR/RR), SC (SDES/BYE), subtype (APP) or FMT (RFC 4585
// feedback). `length` is the packet size in 32-bit words minus one. A
// compound packet is RTCP packets back to back in one datagram (§6.1).

/// Named constants of the RTCP wire format.
public enum RTCP {
    public static let headerSize = 4
    /// RFC 3550 §12.1 packet types, RFC 4585 §6.1 feedback types.
    public enum PacketType {
        public static let senderReport: UInt8 = 200
        public static let receiverReport: UInt8 = 201
        public static let sourceDescription: UInt8 = 202
        public static let goodbye: UInt8 = 203
        public static let applicationDefined: UInt8 = 204
        /// Transport-layer feedback (RFC 4585 §6.2).
        public static let transportFeedback: UInt8 = 205
        /// Payload-specific feedback (RFC 4585 §6.3).
        public static let payloadFeedback: UInt8 = 206
    }
    /// FMT values inside RTPFB/PSFB.
    public enum Format {
        /// RTPFB generic NACK (RFC 4585 §6.2.1).
        public static let genericNACK: UInt8 = 1
        /// PSFB picture loss indication (RFC 4585 §6.3.1).
        public static let pictureLossIndication: UInt8 = 1
        /// PSFB full intra request (RFC 5104 §4.3.1).
        public static let fullIntraRequest: UInt8 = 4
        /// PSFB application layer feedback (RFC 4585 §6.4), carrier of REMB.
        public static let applicationLayerFeedback: UInt8 = 15
    }
    /// "REMB" as a big-endian word (draft-alvestrand-rmcat-remb §2.2).
    public static let rembIdentifier: UInt32 = 0x5245_4D42
    static let countMask: UInt8 = 0x1F
    static let maxCount = 31
    static let reportBlockSize = 24
}

/// One RTCP packet inside a compound packet, borrowed from the caller's bytes.
public struct RTCPPacketView {
    /// The packet, header included, padding included.
    public let bytes: UnsafeRawBufferPointer
    /// Padding bytes at the end of the packet (0 when P = 0).
    public let paddingSize: Int

    public var hasPadding: Bool { bytes[0] & RTP.paddingBit != 0 }
    /// RC, SC, APP subtype or feedback FMT (5 bits).
    public var count: UInt8 { bytes[0] & RTCP.countMask }
    public var packetType: UInt8 { bytes[1] }
    /// The body after the 4-byte header, padding removed.
    public var body: UnsafeRawBufferPointer { bytes.slice(RTCP.headerSize..<(bytes.count - paddingSize)) }
    /// The first word of the body: sender SSRC for SR/RR/feedback/APP, first
    /// source for SDES/BYE; nil when the body is empty.
    public var senderSSRC: UInt32? { body.count >= 4 ? body.u32(0) : nil }
    /// For RTPFB/PSFB (RFC 4585 §6.1): the media source SSRC.
    public var mediaSSRC: UInt32? { body.count >= 8 ? body.u32(4) : nil }

    /// For a sender report: its NTP timestamp, read in place (for LSR/DLSR
    /// bookkeeping without decoding the report blocks).
    public var senderReportNTPTimestamp: UInt64? {
        packetType == RTCP.PacketType.senderReport && body.count >= 24 ? body.u64(4) : nil
    }

    /// Parses one RTCP packet that fills `bytes` exactly.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(RTPError) {
        guard bytes.count >= RTCP.headerSize else { throw .truncated(need: RTCP.headerSize, have: bytes.count) }
        let version = bytes[0] >> RTP.versionShift
        guard version == RTP.version else { throw .badVersion(version) }
        let size = 4 * (Int(bytes.u16(2)) + 1)
        guard size == bytes.count else { throw .badRTCPLength(offset: 0, words: Int(bytes.u16(2))) }
        var padding = 0
        if bytes[0] & RTP.paddingBit != 0 {
            padding = Int(bytes[size - 1])
            let available = size - RTCP.headerSize
            // The count includes itself; content stays word aligned, so it is a multiple of 4.
            guard padding >= 1, padding <= available, padding % 4 == 0 else {
                throw .badPadding(count: padding, available: available)
            }
        }
        self.bytes = bytes
        self.paddingSize = padding
    }
}

/// A validated compound RTCP packet (RFC 3550 §6.1): iterate it to get each
/// packet as a view, without copying or allocating.
public struct RTCPCompoundView: Sequence {
    public let bytes: UnsafeRawBufferPointer
    /// Number of packets inside.
    public let packetCount: Int

    /// Validates every header and length; throws on the first malformed one.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(RTPError) {
        guard bytes.count >= RTCP.headerSize else { throw .truncated(need: RTCP.headerSize, have: bytes.count) }
        var off = 0
        var n = 0
        while off < bytes.count {
            guard bytes.count - off >= RTCP.headerSize else {
                throw .truncated(need: off + RTCP.headerSize, have: bytes.count)
            }
            let words = Int(bytes.u16(off + 2))
            let size = 4 * (words + 1)
            guard off + size <= bytes.count else { throw .badRTCPLength(offset: off, words: words) }
            _ = try RTCPPacketView(parsing: bytes.slice(off..<(off + size)))
            off += size
            n += 1
        }
        self.bytes = bytes
        self.packetCount = n
    }

    public struct Iterator: IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var offset = 0
        public mutating func next() -> RTCPPacketView? {
            guard offset < bytes.count else { return nil }
            let size = 4 * (Int(bytes.u16(offset + 2)) + 1)
            defer { offset += size }
            // Already validated by init(parsing:).
            return try? RTCPPacketView(parsing: bytes.slice(offset..<(offset + size)))
        }
    }

    public func makeIterator() -> Iterator { Iterator(bytes: bytes) }
}

/// What every RTCP packet value can do.
public protocol RTCPPacketEncodable {
    /// Bytes `write(into:)` produces (header included, always a multiple of 4).
    var encodedSize: Int { get }
    /// Writes the packet at the start of `buffer`; returns the bytes written.
    func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int
}

/// What every typed RTCP packet value can do: decode from a view, and build.
public protocol RTCPPacketCodable: RTCPPacketEncodable {
    /// Decodes one packet view; throws on the wrong type/format or a malformed body.
    init(_ view: RTCPPacketView) throws(RTPError)
}

extension RTCPPacketCodable {
    /// Parses one RTCP packet that fills `bytes` exactly.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(RTPError) {
        try self.init(RTCPPacketView(parsing: bytes))
    }
}

extension RTCPPacketEncodable {
    /// The encoded packet as a new array (allocates; for tests and tools).
    public func encoded() throws(RTPError) -> [UInt8] {
        try encodeToArray(size: encodedSize) { (b) throws(RTPError) in try write(into: b) }
    }
}

/// Writes the common header for a packet of `size` bytes (a multiple of 4).
@inline(__always)
func writeRTCPHeader(_ buffer: UnsafeMutableRawBufferPointer, count: Int, type: UInt8, size: Int) throws(RTPError) {
    guard buffer.count >= size else { throw .bufferTooSmall(need: size, have: buffer.count) }
    guard count <= RTCP.maxCount else { throw .tooMany(field: "RTCP count", count: count, max: RTCP.maxCount) }
    guard size / 4 - 1 <= Int(UInt16.max) else { throw .tooMany(field: "RTCP length", count: size / 4 - 1, max: 65535) }
    buffer[0] = RTP.version << RTP.versionShift | UInt8(count)
    buffer[1] = type
    buffer.put16(UInt16(size / 4 - 1), at: 2)
}

/// Writes an RFC 4585 §6.1 feedback header: common header, sender and media SSRC.
@inline(__always)
func writeFeedbackHeader(_ buffer: UnsafeMutableRawBufferPointer, format: UInt8, type: UInt8, size: Int,
                         senderSSRC: UInt32, mediaSSRC: UInt32) throws(RTPError) {
    try writeRTCPHeader(buffer, count: Int(format), type: type, size: size)
    buffer.put32(senderSSRC, at: 4)
    buffer.put32(mediaSSRC, at: 8)
}

@inline(__always)
func expect(_ view: RTCPPacketView, type: UInt8, format: UInt8? = nil) throws(RTPError) {
    guard view.packetType == type, format == nil || view.count == format else {
        throw .unexpectedPacketType(type: view.packetType, format: view.count)
    }
}

// MARK: - Report blocks

// Report block, RFC 3550 §6.4.1:
//
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |                 SSRC_1 (SSRC of first source)                 |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// | fraction lost |       cumulative number of packets lost       |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           extended highest sequence number received           |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                      interarrival jitter                      |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                         last SR (LSR)                         |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                   delay since last SR (DLSR)                  |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+

/// One reception report block (RFC 3550 §6.4.1).
public struct RTCPReportBlock: Equatable, Sendable {
    public var ssrc: UInt32
    /// Fraction lost since the last report, in 1/256 units.
    public var fractionLost: UInt8
    /// Cumulative packets lost: a signed 24-bit value (duplicates can make it negative).
    public var cumulativeLost: Int32
    public var extendedHighestSequence: UInt32
    /// Interarrival jitter in RTP timestamp units.
    public var jitter: UInt32
    /// Middle 32 bits of the NTP timestamp of the last SR received (0 if none).
    public var lastSenderReport: UInt32
    /// Delay since that SR in 1/65536 s units (0 if none).
    public var delaySinceLastSenderReport: UInt32

    public init(ssrc: UInt32, fractionLost: UInt8 = 0, cumulativeLost: Int32 = 0, extendedHighestSequence: UInt32 = 0,
                jitter: UInt32 = 0, lastSenderReport: UInt32 = 0, delaySinceLastSenderReport: UInt32 = 0) {
        self.ssrc = ssrc
        self.fractionLost = fractionLost
        self.cumulativeLost = cumulativeLost
        self.extendedHighestSequence = extendedHighestSequence
        self.jitter = jitter
        self.lastSenderReport = lastSenderReport
        self.delaySinceLastSenderReport = delaySinceLastSenderReport
    }

    static let maxLost: Int32 = 0x7F_FFFF
    static let minLost: Int32 = -0x80_0000

    init(_ b: UnsafeRawBufferPointer, at o: Int) {
        ssrc = b.u32(o)
        fractionLost = b[o + 4]
        let raw = b.u24(o + 5)
        // Sign-extend 24 → 32 bits.
        cumulativeLost = Int32(bitPattern: raw << 8) >> 8
        extendedHighestSequence = b.u32(o + 8)
        jitter = b.u32(o + 12)
        lastSenderReport = b.u32(o + 16)
        delaySinceLastSenderReport = b.u32(o + 20)
    }

    func write(_ b: UnsafeMutableRawBufferPointer, at o: Int) {
        b.put32(ssrc, at: o)
        b[o + 4] = fractionLost
        let clamped = min(max(cumulativeLost, RTCPReportBlock.minLost), RTCPReportBlock.maxLost)
        b.put24(UInt32(bitPattern: clamped) & 0xFF_FFFF, at: o + 5)
        b.put32(extendedHighestSequence, at: o + 8)
        b.put32(jitter, at: o + 12)
        b.put32(lastSenderReport, at: o + 16)
        b.put32(delaySinceLastSenderReport, at: o + 20)
    }
}

// MARK: - SR

// Sender report, RFC 3550 §6.4.1:
//
// |V=2|P|    RC   |   PT=SR=200   |             length            |
// |                         SSRC of sender                        |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |              NTP timestamp, most significant word             |
// |             NTP timestamp, least significant word             |
// |                         RTP timestamp                         |
// |                     sender's packet count                     |
// |                      sender's octet count                     |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |                 report blocks (RC × 24 bytes)                 |
// |                  profile-specific extensions                  |

/// RTCP sender report (RFC 3550 §6.4.1).
public struct RTCPSenderReport: Equatable, Sendable, RTCPPacketCodable {
    public var ssrc: UInt32
    /// 64-bit NTP timestamp (seconds since 1900 in the high word, fraction in the low).
    public var ntpTimestamp: UInt64
    public var rtpTimestamp: UInt32
    public var packetCount: UInt32
    public var octetCount: UInt32
    public var reports: [RTCPReportBlock]
    public var profileExtension: [UInt8]

    public init(ssrc: UInt32, ntpTimestamp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32,
                reports: [RTCPReportBlock] = [], profileExtension: [UInt8] = []) {
        self.ssrc = ssrc
        self.ntpTimestamp = ntpTimestamp
        self.rtpTimestamp = rtpTimestamp
        self.packetCount = packetCount
        self.octetCount = octetCount
        self.reports = reports
        self.profileExtension = profileExtension
    }

    static let senderInfoSize = 24

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.senderReport)
        let b = view.body
        let rc = Int(view.count)
        let need = RTCPSenderReport.senderInfoSize + RTCP.reportBlockSize * rc
        guard b.count >= need else { throw .badRTCPBody(type: view.packetType, reason: "shorter than its report count") }
        ssrc = b.u32(0)
        ntpTimestamp = b.u64(4)
        rtpTimestamp = b.u32(12)
        packetCount = b.u32(16)
        octetCount = b.u32(20)
        reports = []
        reports.reserveCapacity(rc)
        for i in 0..<rc { reports.append(RTCPReportBlock(b, at: RTCPSenderReport.senderInfoSize + RTCP.reportBlockSize * i)) }
        profileExtension = Array(b.slice(need..<b.count))
    }

    public var encodedSize: Int {
        RTCP.headerSize + RTCPSenderReport.senderInfoSize + RTCP.reportBlockSize * reports.count + padded4(profileExtension.count)
    }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: reports.count, type: RTCP.PacketType.senderReport, size: size)
        buffer.put32(ssrc, at: 4)
        buffer.put64(ntpTimestamp, at: 8)
        buffer.put32(rtpTimestamp, at: 16)
        buffer.put32(packetCount, at: 20)
        buffer.put32(octetCount, at: 24)
        var off = 28
        for r in reports {
            r.write(buffer, at: off)
            off += RTCP.reportBlockSize
        }
        buffer.putBytes(profileExtension, at: off)
        buffer.zero((off + profileExtension.count)..<size)
        return size
    }
}

// MARK: - RR

// Receiver report, RFC 3550 §6.4.2:
//
// |V=2|P|    RC   |   PT=RR=201   |             length            |
// |                     SSRC of packet sender                     |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |                 report blocks (RC × 24 bytes)                 |
// |                  profile-specific extensions                  |

/// RTCP receiver report (RFC 3550 §6.4.2).
public struct RTCPReceiverReport: Equatable, Sendable, RTCPPacketCodable {
    public var ssrc: UInt32
    public var reports: [RTCPReportBlock]
    public var profileExtension: [UInt8]

    public init(ssrc: UInt32, reports: [RTCPReportBlock] = [], profileExtension: [UInt8] = []) {
        self.ssrc = ssrc
        self.reports = reports
        self.profileExtension = profileExtension
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.receiverReport)
        let b = view.body
        let rc = Int(view.count)
        let need = 4 + RTCP.reportBlockSize * rc
        guard b.count >= need else { throw .badRTCPBody(type: view.packetType, reason: "shorter than its report count") }
        ssrc = b.u32(0)
        reports = []
        reports.reserveCapacity(rc)
        for i in 0..<rc { reports.append(RTCPReportBlock(b, at: 4 + RTCP.reportBlockSize * i)) }
        profileExtension = Array(b.slice(need..<b.count))
    }

    public var encodedSize: Int { RTCP.headerSize + 4 + RTCP.reportBlockSize * reports.count + padded4(profileExtension.count) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: reports.count, type: RTCP.PacketType.receiverReport, size: size)
        buffer.put32(ssrc, at: 4)
        var off = 8
        for r in reports {
            r.write(buffer, at: off)
            off += RTCP.reportBlockSize
        }
        buffer.putBytes(profileExtension, at: off)
        buffer.zero((off + profileExtension.count)..<size)
        return size
    }
}

// MARK: - SDES

// Source description, RFC 3550 §6.5:
//
// |V=2|P|    SC   |  PT=SDES=202  |             length            |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |                          SSRC/CSRC_1                          |
// |                           SDES items                          |
// |                              ...                              |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//
// Item: |  type (8)  |  length (8)  | text (length bytes) ...
// The item list ends with one or more zero octets up to the next word.

/// One SDES item (RFC 3550 §6.5): type 1 CNAME, 2 NAME, ... 8 PRIV.
public struct RTCPSourceDescriptionItem: Equatable, Sendable {
    public static let cname: UInt8 = 1
    public var type: UInt8
    public var text: [UInt8]
    public init(type: UInt8, text: [UInt8]) {
        self.type = type
        self.text = text
    }
}

/// One SDES chunk: a source and its items.
public struct RTCPSourceDescriptionChunk: Equatable, Sendable {
    public var source: UInt32
    public var items: [RTCPSourceDescriptionItem]
    public init(source: UInt32, items: [RTCPSourceDescriptionItem]) {
        self.source = source
        self.items = items
    }

    var encodedSize: Int { padded4(4 + items.reduce(0) { $0 + 2 + $1.text.count } + 1) }
}

/// RTCP source description (RFC 3550 §6.5).
public struct RTCPSourceDescription: Equatable, Sendable, RTCPPacketCodable {
    public var chunks: [RTCPSourceDescriptionChunk]

    public init(chunks: [RTCPSourceDescriptionChunk]) { self.chunks = chunks }

    /// A single-chunk SDES carrying a CNAME, as every compound packet needs (§6.1).
    public init(ssrc: UInt32, cname: String) {
        self.init(chunks: [RTCPSourceDescriptionChunk(source: ssrc, items: [
            RTCPSourceDescriptionItem(type: RTCPSourceDescriptionItem.cname, text: Array(cname.utf8)),
        ])])
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.sourceDescription)
        let b = view.body
        var off = 0
        chunks = []
        for _ in 0..<Int(view.count) {
            guard off + 4 <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "chunk past end") }
            var chunk = RTCPSourceDescriptionChunk(source: b.u32(off), items: [])
            off += 4
            while true {
                guard off < b.count else { throw .badRTCPBody(type: view.packetType, reason: "item list not terminated") }
                let type = b[off]
                if type == 0 {
                    // End of list: skip to the next word boundary (§6.5).
                    off = padded4(off + 1)
                    break
                }
                guard off + 2 <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "item header past end") }
                let len = Int(b[off + 1])
                guard off + 2 + len <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "item past end") }
                chunk.items.append(RTCPSourceDescriptionItem(type: type, text: Array(b.slice((off + 2)..<(off + 2 + len)))))
                off += 2 + len
            }
            chunks.append(chunk)
        }
    }

    public var encodedSize: Int { RTCP.headerSize + chunks.reduce(0) { $0 + $1.encodedSize } }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: chunks.count, type: RTCP.PacketType.sourceDescription, size: size)
        var off = 4
        for c in chunks {
            let end = off + c.encodedSize
            buffer.put32(c.source, at: off)
            off += 4
            for item in c.items {
                guard item.type != 0, item.text.count <= 255 else {
                    throw .badRTCPBody(type: RTCP.PacketType.sourceDescription, reason: "item type 0 or text over 255 bytes")
                }
                buffer[off] = item.type
                buffer[off + 1] = UInt8(item.text.count)
                buffer.putBytes(item.text, at: off + 2)
                off += 2 + item.text.count
            }
            buffer.zero(off..<end)
            off = end
        }
        return size
    }
}

// MARK: - BYE

// Goodbye, RFC 3550 §6.6:
//
// |V=2|P|    SC   |   PT=BYE=203  |             length            |
// |                           SSRC/CSRC                           |
// :                              ...                              :
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |     length    |               reason for leaving            ... (opt)

/// RTCP goodbye (RFC 3550 §6.6).
public struct RTCPGoodbye: Equatable, Sendable, RTCPPacketCodable {
    public var sources: [UInt32]
    /// Optional reason text (nil: absent).
    public var reason: [UInt8]?

    public init(sources: [UInt32], reason: [UInt8]? = nil) {
        self.sources = sources
        self.reason = reason
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.goodbye)
        let b = view.body
        let sc = Int(view.count)
        guard b.count >= 4 * sc else { throw .badRTCPBody(type: view.packetType, reason: "shorter than its source count") }
        sources = (0..<sc).map { b.u32(4 * $0) }
        let off = 4 * sc
        if off < b.count {
            let len = Int(b[off])
            guard off + 1 + len <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "reason past end") }
            reason = Array(b.slice((off + 1)..<(off + 1 + len)))
        } else {
            reason = nil
        }
    }

    public var encodedSize: Int { RTCP.headerSize + 4 * sources.count + (reason.map { padded4(1 + $0.count) } ?? 0) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        if let r = reason, r.count > 255 { throw .tooMany(field: "BYE reason bytes", count: r.count, max: 255) }
        try writeRTCPHeader(buffer, count: sources.count, type: RTCP.PacketType.goodbye, size: size)
        var off = 4
        for s in sources {
            buffer.put32(s, at: off)
            off += 4
        }
        if let r = reason {
            buffer[off] = UInt8(r.count)
            buffer.putBytes(r, at: off + 1)
            buffer.zero((off + 1 + r.count)..<size)
        }
        return size
    }
}

// MARK: - APP

// Application-defined, RFC 3550 §6.7:
//
// |V=2|P| subtype |   PT=APP=204  |             length            |
// |                           SSRC/CSRC                           |
// |                          name (ASCII)                         |
// |                   application-dependent data                ...

/// RTCP application-defined packet (RFC 3550 §6.7).
public struct RTCPApplicationDefined: Equatable, Sendable, RTCPPacketCodable {
    public var subtype: UInt8
    public var ssrc: UInt32
    /// Four ASCII characters as a big-endian word.
    public var name: UInt32
    /// Application data; padded with zeros to a word on write.
    public var data: [UInt8]

    public init(subtype: UInt8, ssrc: UInt32, name: UInt32, data: [UInt8]) {
        self.subtype = subtype
        self.ssrc = ssrc
        self.name = name
        self.data = data
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.applicationDefined)
        let b = view.body
        guard b.count >= 8 else { throw .badRTCPBody(type: view.packetType, reason: "shorter than SSRC and name") }
        subtype = view.count
        ssrc = b.u32(0)
        name = b.u32(4)
        data = Array(b.slice(8..<b.count))
    }

    public var encodedSize: Int { RTCP.headerSize + 8 + padded4(data.count) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: Int(subtype), type: RTCP.PacketType.applicationDefined, size: size)
        buffer.put32(ssrc, at: 4)
        buffer.put32(name, at: 8)
        buffer.putBytes(data, at: 12)
        buffer.zero((12 + data.count)..<size)
        return size
    }
}

// MARK: - Feedback (RFC 4585 §6.1)

// Common feedback packet format, RFC 4585 §6.1:
//
// |V=2|P|   FMT   |       PT      |          length               |
// |                  SSRC of packet sender                        |
// |                  SSRC of media source                         |
// :            Feedback Control Information (FCI)                 :

// Generic NACK FCI, RFC 4585 §6.2.1 (RTPFB, FMT = 1):
//
// |            PID                |             BLP               |
//
// PID is a lost sequence number; bit i of BLP (LSB = bit 0) reports
// PID + i + 1 as lost too.

/// One NACK FCI entry.
public struct RTCPNACKPair: Equatable, Sendable {
    public var packetID: UInt16
    public var bitmaskOfLostPackets: UInt16
    public init(packetID: UInt16, bitmaskOfLostPackets: UInt16) {
        self.packetID = packetID
        self.bitmaskOfLostPackets = bitmaskOfLostPackets
    }

    /// Calls `body` for every sequence number this entry reports lost, in order.
    @inlinable public func forEachLost(_ body: (UInt16) -> Void) {
        body(packetID)
        var mask = bitmaskOfLostPackets
        var i: UInt16 = 1
        while mask != 0 {
            if mask & 1 != 0 { body(packetID &+ i) }
            mask >>= 1
            i += 1
        }
    }
}

/// RTCP transport-layer generic NACK (RFC 4585 §6.2.1).
public struct RTCPGenericNACK: Equatable, Sendable, RTCPPacketCodable {
    public var senderSSRC: UInt32
    public var mediaSSRC: UInt32
    public var pairs: [RTCPNACKPair]

    public init(senderSSRC: UInt32, mediaSSRC: UInt32, pairs: [RTCPNACKPair]) {
        self.senderSSRC = senderSSRC
        self.mediaSSRC = mediaSSRC
        self.pairs = pairs
    }

    /// Packs lost sequence numbers (in ascending, wrap-aware order) into PID+BLP pairs.
    public init(senderSSRC: UInt32, mediaSSRC: UInt32, lost: [UInt16]) {
        var pairs: [RTCPNACKPair] = []
        for seq in lost {
            if var last = pairs.last {
                let delta = seq &- last.packetID
                if delta >= 1, delta <= 16 {
                    last.bitmaskOfLostPackets |= 1 << (delta - 1)
                    pairs[pairs.count - 1] = last
                    continue
                }
                if delta == 0 { continue }
            }
            pairs.append(RTCPNACKPair(packetID: seq, bitmaskOfLostPackets: 0))
        }
        self.init(senderSSRC: senderSSRC, mediaSSRC: mediaSSRC, pairs: pairs)
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.transportFeedback, format: RTCP.Format.genericNACK)
        let b = view.body
        guard b.count >= 12 else { throw .badRTCPBody(type: view.packetType, reason: "NACK without an FCI entry") }
        senderSSRC = b.u32(0)
        mediaSSRC = b.u32(4)
        pairs = stride(from: 8, to: b.count - 3, by: 4).map {
            RTCPNACKPair(packetID: b.u16($0), bitmaskOfLostPackets: b.u16($0 + 2))
        }
    }

    /// Every sequence number reported lost, PID+BLP expanded (allocates).
    public var lostSequenceNumbers: [UInt16] {
        var out: [UInt16] = []
        for p in pairs { p.forEachLost { out.append($0) } }
        return out
    }

    /// Expands PID+BLP straight from a packet view, without allocating: for the relay's retransmit path.
    public static func forEachLost(in view: RTCPPacketView, _ body: (UInt16) -> Void) {
        guard view.packetType == RTCP.PacketType.transportFeedback, view.count == RTCP.Format.genericNACK else { return }
        let b = view.body
        var off = 8
        while off + 4 <= b.count {
            RTCPNACKPair(packetID: b.u16(off), bitmaskOfLostPackets: b.u16(off + 2)).forEachLost(body)
            off += 4
        }
    }

    public var encodedSize: Int { RTCP.headerSize + 8 + 4 * pairs.count }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        guard !pairs.isEmpty else { throw .badRTCPBody(type: RTCP.PacketType.transportFeedback, reason: "NACK without an FCI entry") }
        try writeFeedbackHeader(buffer, format: RTCP.Format.genericNACK, type: RTCP.PacketType.transportFeedback, size: size,
                                senderSSRC: senderSSRC, mediaSSRC: mediaSSRC)
        var off = 12
        for p in pairs {
            buffer.put16(p.packetID, at: off)
            buffer.put16(p.bitmaskOfLostPackets, at: off + 2)
            off += 4
        }
        return size
    }
}

/// RTCP picture loss indication (RFC 4585 §6.3.1; PSFB, FMT = 1, no FCI).
public struct RTCPPictureLossIndication: Equatable, Sendable, RTCPPacketCodable {
    public var senderSSRC: UInt32
    public var mediaSSRC: UInt32

    public init(senderSSRC: UInt32, mediaSSRC: UInt32) {
        self.senderSSRC = senderSSRC
        self.mediaSSRC = mediaSSRC
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.payloadFeedback, format: RTCP.Format.pictureLossIndication)
        let b = view.body
        guard b.count >= 8 else { throw .badRTCPBody(type: view.packetType, reason: "PLI shorter than two SSRCs") }
        senderSSRC = b.u32(0)
        mediaSSRC = b.u32(4)
    }

    public var encodedSize: Int { RTCP.headerSize + 8 }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        try writeFeedbackHeader(buffer, format: RTCP.Format.pictureLossIndication, type: RTCP.PacketType.payloadFeedback, size: 12,
                                senderSSRC: senderSSRC, mediaSSRC: mediaSSRC)
        return 12
    }
}

// FIR FCI entry, RFC 5104 §4.3.1.1 (PSFB, FMT = 4; media SSRC is 0):
//
// |                              SSRC                             |
// | Seq nr.       |    Reserved                                   |

/// One FIR request: the target SSRC and its command sequence number.
public struct RTCPFIREntry: Equatable, Sendable {
    public var ssrc: UInt32
    public var sequenceNumber: UInt8
    public init(ssrc: UInt32, sequenceNumber: UInt8) {
        self.ssrc = ssrc
        self.sequenceNumber = sequenceNumber
    }
}

/// RTCP full intra request (RFC 5104 §4.3.1).
public struct RTCPFullIntraRequest: Equatable, Sendable, RTCPPacketCodable {
    public var senderSSRC: UInt32
    /// Unused by FIR (RFC 5104 §4.3.1.2 says 0), kept as received.
    public var mediaSSRC: UInt32
    public var entries: [RTCPFIREntry]

    public init(senderSSRC: UInt32, mediaSSRC: UInt32 = 0, entries: [RTCPFIREntry]) {
        self.senderSSRC = senderSSRC
        self.mediaSSRC = mediaSSRC
        self.entries = entries
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.payloadFeedback, format: RTCP.Format.fullIntraRequest)
        let b = view.body
        guard b.count >= 16 else { throw .badRTCPBody(type: view.packetType, reason: "FIR without an FCI entry") }
        senderSSRC = b.u32(0)
        mediaSSRC = b.u32(4)
        entries = stride(from: 8, to: b.count - 7, by: 8).map { RTCPFIREntry(ssrc: b.u32($0), sequenceNumber: b[$0 + 4]) }
    }

    public var encodedSize: Int { RTCP.headerSize + 8 + 8 * entries.count }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        guard !entries.isEmpty else { throw .badRTCPBody(type: RTCP.PacketType.payloadFeedback, reason: "FIR without an FCI entry") }
        try writeFeedbackHeader(buffer, format: RTCP.Format.fullIntraRequest, type: RTCP.PacketType.payloadFeedback, size: size,
                                senderSSRC: senderSSRC, mediaSSRC: mediaSSRC)
        var off = 12
        for e in entries {
            buffer.put32(e.ssrc, at: off)
            buffer[off + 4] = e.sequenceNumber
            buffer.zero((off + 5)..<(off + 8))
            off += 8
        }
        return size
    }
}

// REMB, draft-alvestrand-rmcat-remb-03 §2.2 (PSFB, FMT = 15, media SSRC 0):
//
// |  Unique identifier 'R' 'E' 'M' 'B'                            |
// |  Num SSRC     | BR Exp    |  BR Mantissa                      |
// |   SSRC feedback                                               |
// |  ...                                                          |
//
// Bitrate (bits/s) = mantissa × 2^exp; exp is 6 bits, mantissa 18 bits.

/// RTCP receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
public struct RTCPReceiverEstimatedMaximumBitrate: Equatable, Sendable, RTCPPacketCodable {
    public var senderSSRC: UInt32
    public var mediaSSRC: UInt32
    /// 6-bit exponent and 18-bit mantissa as on the wire (kept exactly for round trips).
    public var exponent: UInt8
    public var mantissa: UInt32
    public var ssrcs: [UInt32]

    static let maxMantissa: UInt64 = (1 << 18) - 1

    /// Encodes `bitrate` with the smallest exponent that fits (rounding down).
    public init(senderSSRC: UInt32, mediaSSRC: UInt32 = 0, bitrate: UInt64, ssrcs: [UInt32]) {
        var exp: UInt8 = 0
        var m = bitrate
        while m > RTCPReceiverEstimatedMaximumBitrate.maxMantissa {
            m >>= 1
            exp += 1
        }
        self.init(senderSSRC: senderSSRC, mediaSSRC: mediaSSRC, exponent: exp, mantissa: UInt32(m), ssrcs: ssrcs)
    }

    public init(senderSSRC: UInt32, mediaSSRC: UInt32 = 0, exponent: UInt8, mantissa: UInt32, ssrcs: [UInt32]) {
        self.senderSSRC = senderSSRC
        self.mediaSSRC = mediaSSRC
        self.exponent = exponent
        self.mantissa = mantissa
        self.ssrcs = ssrcs
    }

    /// Bits per second (saturates at UInt64.max for exponents the wire allows but 64 bits do not).
    public var bitrate: UInt64 {
        let m = UInt64(mantissa)
        guard m != 0 else { return 0 }
        if Int(exponent) >= m.leadingZeroBitCount { return .max }
        return m << exponent
    }

    /// True when `view` is an AFB packet carrying REMB.
    public static func matches(_ view: RTCPPacketView) -> Bool {
        view.packetType == RTCP.PacketType.payloadFeedback && view.count == RTCP.Format.applicationLayerFeedback
            && view.body.count >= 12 && view.body.u32(8) == RTCP.rembIdentifier
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.payloadFeedback, format: RTCP.Format.applicationLayerFeedback)
        let b = view.body
        guard b.count >= 16, b.u32(8) == RTCP.rembIdentifier else {
            throw .badRTCPBody(type: view.packetType, reason: "AFB is not REMB")
        }
        senderSSRC = b.u32(0)
        mediaSSRC = b.u32(4)
        let n = Int(b[12])
        exponent = b[13] >> 2
        mantissa = b.u24(13) & 0x3_FFFF
        guard b.count >= 16 + 4 * n else { throw .badRTCPBody(type: view.packetType, reason: "REMB SSRC list past end") }
        ssrcs = (0..<n).map { b.u32(16 + 4 * $0) }
    }

    public var encodedSize: Int { RTCP.headerSize + 16 + 4 * ssrcs.count }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        guard ssrcs.count <= 255 else { throw .tooMany(field: "REMB SSRCs", count: ssrcs.count, max: 255) }
        guard exponent < 64, UInt64(mantissa) <= RTCPReceiverEstimatedMaximumBitrate.maxMantissa else {
            throw .tooMany(field: "REMB exponent/mantissa", count: Int(mantissa), max: Int(RTCPReceiverEstimatedMaximumBitrate.maxMantissa))
        }
        try writeFeedbackHeader(buffer, format: RTCP.Format.applicationLayerFeedback, type: RTCP.PacketType.payloadFeedback, size: size,
                                senderSSRC: senderSSRC, mediaSSRC: mediaSSRC)
        buffer.put32(RTCP.rembIdentifier, at: 12)
        buffer[16] = UInt8(ssrcs.count)
        buffer.put24(UInt32(exponent) << 18 | mantissa, at: 17)
        var off = 20
        for s in ssrcs {
            buffer.put32(s, at: off)
            off += 4
        }
        return size
    }
}

/// Any RTCP packet we do not model: kept as its header fields and body.
public struct RTCPUnknownPacket: Equatable, Sendable, RTCPPacketCodable {
    public var packetType: UInt8
    public var count: UInt8
    /// The body after the header, padding removed (a multiple of 4 bytes).
    public var body: [UInt8]

    public init(packetType: UInt8, count: UInt8, body: [UInt8]) {
        self.packetType = packetType
        self.count = count
        self.body = body
    }

    public init(_ view: RTCPPacketView) {
        self.init(packetType: view.packetType, count: view.count, body: Array(view.body))
    }

    public var encodedSize: Int { RTCP.headerSize + padded4(body.count) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: Int(count), type: packetType, size: size)
        buffer.putBytes(body, at: 4)
        buffer.zero((4 + body.count)..<size)
        return size
    }
}

// MARK: - Any packet, compound packets

/// One RTCP packet of any supported type.
public enum RTCPPacket: Equatable, Sendable, RTCPPacketCodable {
    case senderReport(RTCPSenderReport)
    case receiverReport(RTCPReceiverReport)
    case sourceDescription(RTCPSourceDescription)
    case goodbye(RTCPGoodbye)
    case applicationDefined(RTCPApplicationDefined)
    case genericNACK(RTCPGenericNACK)
    case pictureLossIndication(RTCPPictureLossIndication)
    case fullIntraRequest(RTCPFullIntraRequest)
    case receiverEstimatedMaximumBitrate(RTCPReceiverEstimatedMaximumBitrate)
    case unknown(RTCPUnknownPacket)

    /// Decodes a packet view into its typed value. Unknown types and formats
    /// become `.unknown`; known ones with a malformed body throw.
    public init(_ view: RTCPPacketView) throws(RTPError) {
        switch (view.packetType, view.count) {
        case (RTCP.PacketType.senderReport, _): self = .senderReport(try RTCPSenderReport(view))
        case (RTCP.PacketType.receiverReport, _): self = .receiverReport(try RTCPReceiverReport(view))
        case (RTCP.PacketType.sourceDescription, _): self = .sourceDescription(try RTCPSourceDescription(view))
        case (RTCP.PacketType.goodbye, _): self = .goodbye(try RTCPGoodbye(view))
        case (RTCP.PacketType.applicationDefined, _): self = .applicationDefined(try RTCPApplicationDefined(view))
        case (RTCP.PacketType.transportFeedback, RTCP.Format.genericNACK): self = .genericNACK(try RTCPGenericNACK(view))
        case (RTCP.PacketType.payloadFeedback, RTCP.Format.pictureLossIndication):
            self = .pictureLossIndication(try RTCPPictureLossIndication(view))
        case (RTCP.PacketType.payloadFeedback, RTCP.Format.fullIntraRequest):
            self = .fullIntraRequest(try RTCPFullIntraRequest(view))
        case (RTCP.PacketType.payloadFeedback, RTCP.Format.applicationLayerFeedback) where RTCPReceiverEstimatedMaximumBitrate.matches(view):
            self = .receiverEstimatedMaximumBitrate(try RTCPReceiverEstimatedMaximumBitrate(view))
        default: self = .unknown(RTCPUnknownPacket(view))
        }
    }

    public var encodedSize: Int {
        switch self {
        case let .senderReport(p): return p.encodedSize
        case let .receiverReport(p): return p.encodedSize
        case let .sourceDescription(p): return p.encodedSize
        case let .goodbye(p): return p.encodedSize
        case let .applicationDefined(p): return p.encodedSize
        case let .genericNACK(p): return p.encodedSize
        case let .pictureLossIndication(p): return p.encodedSize
        case let .fullIntraRequest(p): return p.encodedSize
        case let .receiverEstimatedMaximumBitrate(p): return p.encodedSize
        case let .unknown(p): return p.encodedSize
        }
    }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        switch self {
        case let .senderReport(p): return try p.write(into: buffer)
        case let .receiverReport(p): return try p.write(into: buffer)
        case let .sourceDescription(p): return try p.write(into: buffer)
        case let .goodbye(p): return try p.write(into: buffer)
        case let .applicationDefined(p): return try p.write(into: buffer)
        case let .genericNACK(p): return try p.write(into: buffer)
        case let .pictureLossIndication(p): return try p.write(into: buffer)
        case let .fullIntraRequest(p): return try p.write(into: buffer)
        case let .receiverEstimatedMaximumBitrate(p): return try p.write(into: buffer)
        case let .unknown(p): return try p.write(into: buffer)
        }
    }

    /// Parses a whole compound packet into values (allocates; the packet
    /// path can iterate `RTCPCompoundView` instead).
    public static func parseCompound(_ bytes: UnsafeRawBufferPointer) throws(RTPError) -> [RTCPPacket] {
        let compound = try RTCPCompoundView(parsing: bytes)
        var out: [RTCPPacket] = []
        out.reserveCapacity(compound.packetCount)
        for view in compound { out.append(try RTCPPacket(view)) }
        return out
    }

    /// Bytes `writeCompound` produces.
    public static func compoundSize(_ packets: [RTCPPacket]) -> Int { packets.reduce(0) { $0 + $1.encodedSize } }

    /// Writes packets back to back into `buffer`; returns the bytes written.
    @discardableResult
    public static func writeCompound(_ packets: [RTCPPacket], into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = compoundSize(packets)
        guard buffer.count >= size else { throw .bufferTooSmall(need: size, have: buffer.count) }
        var off = 0
        for p in packets { off += try p.write(into: UnsafeMutableRawBufferPointer(rebasing: buffer[off...])) }
        return off
    }

    /// The compound packet as a new array (allocates; for tests and tools).
    public static func encodeCompound(_ packets: [RTCPPacket]) throws(RTPError) -> [UInt8] {
        try encodeToArray(size: compoundSize(packets)) { (b) throws(RTPError) in try writeCompound(packets, into: b) }
    }
}
