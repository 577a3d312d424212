import ParleyCore

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
