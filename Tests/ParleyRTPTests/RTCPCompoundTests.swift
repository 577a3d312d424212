import XCTest
@testable import ParleyRTP

/// Parses a compound packet from an array (the RTCP tests' entry point).
func parseCompound(_ bytes: [UInt8]) throws(RTPError) -> [RTCPPacket] {
    let r: Result<[RTCPPacket], RTPError> = bytes.withUnsafeBytes { b in
        Result { () throws(RTPError) in try RTCPPacket.parseCompound(b) }
    }
    return try r.get()
}

final class RTCPCompoundTests: XCTestCase {
    func testCompoundViewIteratesWithoutCopying() throws {
        let rr = RTCPReceiverReport(ssrc: 5, reports: [RTCPReportBlock(ssrc: 6), RTCPReportBlock(ssrc: 7)])
        let pli = RTCPPictureLossIndication(senderSSRC: 5, mediaSSRC: 6)
        let bytes = try RTCPPacket.encodeCompound([.receiverReport(rr), .pictureLossIndication(pli)])
        try bytes.withUnsafeBytes { b in
            let compound = try RTCPCompoundView(parsing: b)
            XCTAssertEqual(compound.packetCount, 2)
            let views = Array(compound)
            XCTAssertEqual(views.map(\.packetType), [201, 206])
            XCTAssertEqual(views[0].count, 2)
            XCTAssertEqual(views[1].count, 1)
            XCTAssertEqual(views[1].senderSSRC, 5)
            XCTAssertEqual(views[1].mediaSSRC, 6)
            XCTAssertEqual(views[1].bytes.baseAddress, b.baseAddress! + rr.encodedSize)
            XCTAssertEqual(try RTCPReceiverReport(views[0]), rr)
        }
    }

    func testPLIFIRAndREMBCompoundRoundTrip() throws {
        let pli = RTCPPictureLossIndication(senderSSRC: 0x0A, mediaSSRC: 0x0B)
        let fir = RTCPFullIntraRequest(senderSSRC: 0x0A, entries: [RTCPFIREntry(ssrc: 0x0B, sequenceNumber: 3)])
        let remb = RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 0x0A, bitrate: 1_000_000, ssrcs: [0x0B])
        let all = try RTCPPacket.encodeCompound([.pictureLossIndication(pli), .fullIntraRequest(fir),
                                                  .receiverEstimatedMaximumBitrate(remb)])
        XCTAssertEqual(try parseCompound(all), [.pictureLossIndication(pli), .fullIntraRequest(fir),
                                                .receiverEstimatedMaximumBitrate(remb)])
    }

    func testPaddingOnLastPacketIsStripped() throws {
        // RR with no blocks, P=1, 4 bytes of padding (count 4 in the last byte).
        let bytes = hex("a0 c9 00 02 00 00 00 07 00 00 00 04")
        XCTAssertEqual(try parseCompound(bytes), [.receiverReport(RTCPReceiverReport(ssrc: 7))])
    }
}
