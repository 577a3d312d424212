import ParleyCore

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
