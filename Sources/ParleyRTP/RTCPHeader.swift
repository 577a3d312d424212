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
        /// RTPFB transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).
        public static let transportWideFeedback: UInt8 = 15
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
            // RFC 3550 §6.4.1: the last octet counts the padding, itself included. Any count from 1 is
            // taken, not only multiples of 4: libwebrtc pads transport-wide feedback with 1-3 octets
            // (its deltas end anywhere), so the body before the padding need not end on a word.
            guard padding >= 1, padding <= available else {
                throw .badPadding(count: padding, available: available)
            }
        }
        self.bytes = bytes
        self.paddingSize = padding
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

/// Ends a packet whose content stops at `content`, short of its size (the
/// next word): the 1-3 octets left become RFC 3550 padding (zeros, P set, the
/// last octet counts them), so that parsing it gives back the same content.
@inline(__always)
func finishRTCPPadding(_ buffer: UnsafeMutableRawBufferPointer, content: Int, size: Int) {
    buffer.zero(content..<size)
    guard size > content else { return }
    buffer[0] |= RTP.paddingBit
    buffer[size - 1] = UInt8(size - content)
}

// Common feedback packet format, RFC 4585 §6.1:
//
// |V=2|P|   FMT   |       PT      |          length               |
// |                  SSRC of packet sender                        |
// |                  SSRC of media source                         |
// :            Feedback Control Information (FCI)                 :

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
