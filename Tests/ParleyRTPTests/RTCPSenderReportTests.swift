import XCTest
@testable import ParleyRTP

final class RTCPSenderReportTests: XCTestCase {
    func testSenderReportAndSDESCompoundByteLayout() throws {
        let sr = RTCPSenderReport(ssrc: 0x1122_3344, ntpTimestamp: 0xE000_0001_8000_0000, rtpTimestamp: 90000,
                                  packetCount: 10, octetCount: 1000,
                                  reports: [RTCPReportBlock(ssrc: 0xAABB_CCDD, fractionLost: 64, cumulativeLost: -2,
                                                            extendedHighestSequence: 0x0001_0005, jitter: 12,
                                                            lastSenderReport: 0x0001_8000, delaySinceLastSenderReport: 65536)])
        let sdes = RTCPSourceDescription(ssrc: 0x1122_3344, cname: "parley")
        let bytes = try RTCPPacket.encodeCompound([.senderReport(sr), .sourceDescription(sdes)])
        let expected = hex("""
            81 c8 00 0c 11 22 33 44 e0 00 00 01 80 00 00 00 00 01 5f 90 00 00 00 0a 00 00 03 e8
            aa bb cc dd 40 ff ff fe 00 01 00 05 00 00 00 0c 00 01 80 00 00 01 00 00
            81 ca 00 04 11 22 33 44 01 06 70 61 72 6c 65 79 00 00 00 00
            """)
        XCTAssertEqual(bytes, expected)
        let parsed = try parseCompound(bytes)
        XCTAssertEqual(parsed, [.senderReport(sr), .sourceDescription(sdes)])
        try bytes.withUnsafeBytes { b in
            let views = Array(try RTCPCompoundView(parsing: b))
            XCTAssertEqual(views[0].senderReportNTPTimestamp, 0xE000_0001_8000_0000)
            XCTAssertNil(views[1].senderReportNTPTimestamp)
        }
    }
}
