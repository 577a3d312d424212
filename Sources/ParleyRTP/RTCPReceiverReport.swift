import ParleyCore

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
        finishRTCPPadding(buffer, content: off + profileExtension.count, size: size)
        return size
    }
}
