import ParleyCore

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

    /// A report's `count` blocks from `start` of its body, and the profile-specific extension after them (RR
    /// and SR). Throws when the body is shorter than the blocks.
    static func read(_ b: UnsafeRawBufferPointer, count: Int, from start: Int, type: UInt8) throws(RTPError)
        -> (blocks: [RTCPReportBlock], profileExtension: [UInt8]) {
        let end = start + RTCP.reportBlockSize * count
        guard b.count >= end else { throw .badRTCPBody(type: type, reason: "shorter than its report count") }
        var blocks: [RTCPReportBlock] = []
        blocks.reserveCapacity(count)
        for i in 0..<count { blocks.append(RTCPReportBlock(b, at: start + RTCP.reportBlockSize * i)) }
        return (blocks, Array(b.slice(end..<b.count)))
    }

    /// Writes a report's `blocks` from `start`, then its profile-specific extension, then the padding up to
    /// `size` (RR and SR).
    static func write(_ blocks: [RTCPReportBlock], profileExtension: [UInt8], into buffer: UnsafeMutableRawBufferPointer,
                      from start: Int, size: Int) {
        var off = start
        for r in blocks {
            r.write(buffer, at: off)
            off += RTCP.reportBlockSize
        }
        buffer.putBytes(profileExtension, at: off)
        finishRTCPPadding(buffer, content: off + profileExtension.count, size: size)
    }
}
