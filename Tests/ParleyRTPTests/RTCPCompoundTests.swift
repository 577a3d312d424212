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

    /// RFC 3550 §6.4.1 padding of 1-3 octets, as libwebrtc sends transport-wide
    /// feedback: the last octet counts the padding, the body ends off a word,
    /// and the packets after it in the compound are still read.
    func testPaddingThatIsNotAWholeWordIsTaken() throws {
        for (received, pad) in [(1, 1), (4, 2), (3, 3)] {
            // Transport-wide feedback (RTPFB FMT 15): `received` packets with 1-byte deltas, 22 + `received`
            // octets of content, padded to the word with `pad` octets.
            var fb = hex("af cd 00 00 00 00 00 01 00 00 00 02 00 05 00") + [UInt8(received)] + hex("00 00 01 00 20")
                + [UInt8(received)] + Array(repeating: 4, count: received)
            let bodyEnd = fb.count
            XCTAssertEqual((bodyEnd + pad) % 4, 0)
            fb += Array(repeating: 0, count: pad - 1) + [UInt8(pad)]
            fb[3] = UInt8(fb.count / 4 - 1)
            let rr = try RTCPPacket.encodeCompound([.receiverReport(RTCPReceiverReport(ssrc: 9))])
            try (rr + fb + rr).withUnsafeBytes { b in
                let views = Array(try RTCPCompoundView(parsing: b))
                XCTAssertEqual(views.map(\.packetType), [201, 205, 201], "padding \(pad)")
                XCTAssertEqual(views[1].count, 15)
                XCTAssertEqual(views[1].paddingSize, pad)
                XCTAssertEqual(views[1].body.count, bodyEnd - 4, "the body ends where the padding starts")
                XCTAssertEqual(views[1].mediaSSRC, 2)
            }
        }
        // A count past the packet's body is still refused.
        XCTAssertThrowsError(try parseCompound(hex("a0 c9 00 02 00 00 00 07 00 00 00 09")), "a count past the packet") {
            XCTAssertEqual($0 as? RTPError, .badPadding(count: 9, available: 8))
        }
        let unknown = try parseCompound(hex("a0 d0 00 02 00 00 00 07 01 00 00 03"))
        XCTAssertEqual(unknown, [.unknown(RTCPUnknownPacket(packetType: 208, count: 0, body: [0, 0, 0, 7, 1]))])
        // Written back with the same padding, so it parses to the same body.
        XCTAssertEqual(try RTCPPacket.encodeCompound(unknown), hex("a0 d0 00 02 00 00 00 07 01 00 00 03"))
        let sr = RTCPSenderReport(ssrc: 1, ntpTimestamp: 2, rtpTimestamp: 3, packetCount: 4, octetCount: 5, profileExtension: [9, 9])
        let encoded = try RTCPPacket.encodeCompound([.senderReport(sr)])
        XCTAssertEqual(encoded.count % 4, 0)
        XCTAssertEqual(try parseCompound(encoded), [.senderReport(sr)])
    }
}
