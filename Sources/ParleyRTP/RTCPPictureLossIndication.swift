import ParleyCore

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
