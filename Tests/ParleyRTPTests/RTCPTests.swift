import XCTest
@testable import ParleyRTP

func parseCompound(_ bytes: [UInt8]) throws(RTPError) -> [RTCPPacket] {
    let r: Result<[RTCPPacket], RTPError> = bytes.withUnsafeBytes { b in
        Result { () throws(RTPError) in try RTCPPacket.parseCompound(b) }
    }
    return try r.get()
}

final class RTCPTests: XCTestCase {
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

    func testRFC4585GenericNACKExpansion() throws {
        // PID 100, BLP 0b1000_0000_0000_0101 → 100, 101, 103, 116.
        let bytes = hex("81 cd 00 03 00 00 00 01 00 00 00 02 00 64 80 05")
        let packets = try parseCompound(bytes)
        guard case let .genericNACK(nack) = packets.first else { return XCTFail("not a NACK: \(packets)") }
        XCTAssertEqual(nack.senderSSRC, 1)
        XCTAssertEqual(nack.mediaSSRC, 2)
        XCTAssertEqual(nack.lostSequenceNumbers, [100, 101, 103, 116])
        var viaView: [UInt16] = []
        try bytes.withUnsafeBytes { b in
            for v in try RTCPCompoundView(parsing: b) { RTCPGenericNACK.forEachLost(in: v) { viaView.append($0) } }
        }
        XCTAssertEqual(viaView, [100, 101, 103, 116])
        XCTAssertEqual(try nack.encoded(), bytes)
    }

    func testGenericNACKPacksLostSequencesAcrossWrap() throws {
        let lost: [UInt16] = [65534, 65535, 0, 14, 15, 40]
        let nack = RTCPGenericNACK(senderSSRC: 1, mediaSSRC: 2, lost: lost)
        // 65534 covers up to 65534+16 = 14; 15 starts a new pair, 40 another.
        XCTAssertEqual(nack.pairs, [RTCPNACKPair(packetID: 65534, bitmaskOfLostPackets: 0b1000_0000_0000_0011),
                                    RTCPNACKPair(packetID: 15, bitmaskOfLostPackets: 0),
                                    RTCPNACKPair(packetID: 40, bitmaskOfLostPackets: 0)])
        XCTAssertEqual(nack.lostSequenceNumbers, lost)
        XCTAssertEqual(try parseCompound(try nack.encoded()), [.genericNACK(nack)])
    }

    func testPLIFIRAndREMBWireFormat() throws {
        let pli = RTCPPictureLossIndication(senderSSRC: 0x0A, mediaSSRC: 0x0B)
        XCTAssertEqual(try pli.encoded(), hex("81 ce 00 02 00 00 00 0a 00 00 00 0b"))

        let fir = RTCPFullIntraRequest(senderSSRC: 0x0A, entries: [RTCPFIREntry(ssrc: 0x0B, sequenceNumber: 3)])
        XCTAssertEqual(try fir.encoded(), hex("84 ce 00 04 00 00 00 0a 00 00 00 00 00 00 00 0b 03 00 00 00"))

        // 1 Mbit/s = 250000 × 2^2: exponent 2, mantissa 0x3D090.
        let remb = RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 0x0A, bitrate: 1_000_000, ssrcs: [0x0B])
        XCTAssertEqual(remb.exponent, 2)
        XCTAssertEqual(remb.mantissa, 250_000)
        XCTAssertEqual(remb.bitrate, 1_000_000)
        let rembBytes = try remb.encoded()
        XCTAssertEqual(rembBytes, hex("8f ce 00 05 00 00 00 0a 00 00 00 00 52 45 4d 42 01 0b d0 90 00 00 00 0b"))

        let all = try RTCPPacket.encodeCompound([.pictureLossIndication(pli), .fullIntraRequest(fir),
                                                  .receiverEstimatedMaximumBitrate(remb)])
        XCTAssertEqual(try parseCompound(all), [.pictureLossIndication(pli), .fullIntraRequest(fir),
                                                .receiverEstimatedMaximumBitrate(remb)])
    }

    func testREMBBitrateRoundsDownAndSaturates() {
        let r = RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 1, bitrate: 1_000_001, ssrcs: [])
        XCTAssertEqual(r.bitrate, 1_000_000, "rounded down to the representable value")
        let huge = RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 1, exponent: 63, mantissa: 0x3FFFF, ssrcs: [])
        XCTAssertEqual(huge.bitrate, .max)
    }

    func testByeAppAndUnknownRoundTrip() throws {
        let packets: [RTCPPacket] = [
            .goodbye(RTCPGoodbye(sources: [1, 2], reason: Array("left the call".utf8))),
            .goodbye(RTCPGoodbye(sources: [3])),
            .applicationDefined(RTCPApplicationDefined(subtype: 5, ssrc: 9, name: 0x5052_4C59, data: [1, 2, 3, 4])),
            .unknown(RTCPUnknownPacket(packetType: 207, count: 3, body: [0, 0, 0, 1])),
            // AFB (FMT 15) that is not REMB stays unknown.
            .unknown(RTCPUnknownPacket(packetType: 206, count: 15, body: [0, 0, 0, 1, 0, 0, 0, 0, 0x41, 0x42, 0x43, 0x44])),
        ]
        let bytes = try RTCPPacket.encodeCompound(packets)
        XCTAssertEqual(try parseCompound(bytes), packets)
    }

    func testPaddingOnLastPacketIsStripped() throws {
        // RR with no blocks, P=1, 4 bytes of padding (count 4 in the last byte).
        let bytes = hex("a0 c9 00 02 00 00 00 07 00 00 00 04")
        XCTAssertEqual(try parseCompound(bytes), [.receiverReport(RTCPReceiverReport(ssrc: 7))])
    }

    func testMalformedRTCPIsATypedError() {
        let cases: [(String, [UInt8], RTPError)] = [
            ("empty", [], .truncated(need: 4, have: 0)),
            ("version 1", hex("41 c9 00 01 00 00 00 01"), .badVersion(1)),
            ("length past end", hex("80 c9 00 02 00 00 00 01"), .badRTCPLength(offset: 0, words: 2)),
            ("second header truncated", hex("80 c9 00 01 00 00 00 01 80 c9"), .truncated(need: 12, have: 10)),
            ("RR count beyond body", hex("81 c9 00 01 00 00 00 01"), .badRTCPBody(type: 201, reason: "shorter than its report count")),
            ("SR shorter than sender info", hex("80 c8 00 01 00 00 00 01"), .badRTCPBody(type: 200, reason: "shorter than its report count")),
            ("padding not a multiple of 4", hex("a0 c9 00 02 00 00 00 07 00 00 00 03"), .badPadding(count: 3, available: 8)),
            ("padding zero", hex("a0 c9 00 01 00 00 00 00"), .badPadding(count: 0, available: 4)),
            ("padding beyond packet", hex("a0 c9 00 01 00 00 00 08"), .badPadding(count: 8, available: 4)),
            ("SDES item list unterminated", hex("81 ca 00 02 00 00 00 01 01 02 61 62"),
             .badRTCPBody(type: 202, reason: "item list not terminated")),
            ("SDES item past end", hex("81 ca 00 02 00 00 00 01 01 09 61 62"), .badRTCPBody(type: 202, reason: "item past end")),
            ("BYE count beyond body", hex("82 cb 00 01 00 00 00 01"), .badRTCPBody(type: 203, reason: "shorter than its source count")),
            ("BYE reason past end", hex("81 cb 00 02 00 00 00 01 09 61 62 63"), .badRTCPBody(type: 203, reason: "reason past end")),
            ("APP without name", hex("80 cc 00 01 00 00 00 01"), .badRTCPBody(type: 204, reason: "shorter than SSRC and name")),
            ("NACK without FCI", hex("81 cd 00 02 00 00 00 01 00 00 00 02"), .badRTCPBody(type: 205, reason: "NACK without an FCI entry")),
            ("PLI without media SSRC", hex("81 ce 00 01 00 00 00 01"), .badRTCPBody(type: 206, reason: "PLI shorter than two SSRCs")),
            ("FIR without FCI", hex("84 ce 00 02 00 00 00 01 00 00 00 00"), .badRTCPBody(type: 206, reason: "FIR without an FCI entry")),
            ("REMB SSRC list past end", hex("8f ce 00 04 00 00 00 0a 00 00 00 00 52 45 4d 42 02 0b d0 90"),
             .badRTCPBody(type: 206, reason: "REMB SSRC list past end")),
        ]
        for (name, bytes, expected) in cases {
            XCTAssertThrowsError(try parseCompound(bytes), name) { error in
                XCTAssertEqual(error as? RTPError, expected, name)
            }
        }
    }

    func testWrongTypeForTypedParser() throws {
        let pli = hex("81 ce 00 02 00 00 00 0a 00 00 00 0b")
        try pli.withUnsafeBytes { b in
            XCTAssertThrowsError(try RTCPSenderReport(parsing: b)) {
                XCTAssertEqual($0 as? RTPError, .unexpectedPacketType(type: 206, format: 1))
            }
            XCTAssertThrowsError(try RTCPFullIntraRequest(parsing: b))
        }
    }
}
