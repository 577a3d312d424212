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
        (reports, profileExtension) = try RTCPReportBlock.read(b, count: Int(view.count), from: 4, type: view.packetType)
        ssrc = b.u32(0)
    }

    public var encodedSize: Int { RTCP.headerSize + 4 + RTCP.reportBlockSize * reports.count + padded4(profileExtension.count) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: reports.count, type: RTCP.PacketType.receiverReport, size: size)
        buffer.put32(ssrc, at: 4)
        RTCPReportBlock.write(reports, profileExtension: profileExtension, into: buffer, from: 8, size: size)
        return size
    }
}
