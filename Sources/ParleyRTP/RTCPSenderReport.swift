import ParleyCore

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
        (reports, profileExtension) = try RTCPReportBlock.read(b, count: Int(view.count), from: RTCPSenderReport.senderInfoSize,
                                                               type: view.packetType)
        ssrc = b.u32(0)
        ntpTimestamp = b.u64(4)
        rtpTimestamp = b.u32(12)
        packetCount = b.u32(16)
        octetCount = b.u32(20)
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
        RTCPReportBlock.write(reports, profileExtension: profileExtension, into: buffer, from: 28, size: size)
        return size
    }
}
