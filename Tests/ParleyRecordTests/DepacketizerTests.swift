import XCTest
@testable import ParleyRecord

/// Depacketizers and the jitter buffer on hand-built packets.
final class DepacketizerTests: XCTestCase {
    func packet(_ seq: Int64, _ ts: Int64, marker: Bool = true, _ payload: [UInt8]) -> JitterOutput {
        .packet(OrderedPacket(sequence: seq, timestamp: ts, marker: marker, payload: payload))
    }

    // MARK: Jitter buffer

    func testJitterBufferReordersDropsDuplicatesAndReportsLoss() {
        var j = JitterBuffer(window: 3)
        func push(_ seq: UInt16) -> [JitterOutput] { j.push(sequence: seq, timestamp: UInt32(seq) * 10, marker: false, payload: [UInt8(seq & 0xFF)]) }
        func seqs(_ o: [JitterOutput]) -> [String] {
            o.map { if case .packet(let p) = $0 { return "\(p.sequence)" } else if case .lost(let n) = $0 { return "lost \(n)" }; return "" }
        }
        XCTAssertEqual(seqs(push(10)), ["10"])
        XCTAssertEqual(seqs(push(12)), [])  // waits for 11
        XCTAssertEqual(seqs(push(11)), ["11", "12"])
        XCTAssertEqual(seqs(push(11)), [])  // late duplicate
        XCTAssertEqual(seqs(push(14)), [])
        XCTAssertEqual(seqs(push(14)), [])  // duplicate while waiting
        XCTAssertEqual(seqs(push(15)), [])
        XCTAssertEqual(seqs(push(16)), [])
        XCTAssertEqual(seqs(push(17)), ["lost 1", "14", "15", "16", "17"])  // over the window: 13 is given up
        XCTAssertEqual(seqs(push(13)), [])  // too late
        XCTAssertEqual(j.duplicates, 1)  // a duplicate of a released packet counts as late
        XCTAssertEqual(j.late, 2)
        XCTAssertEqual(seqs(push(19)), [])
        XCTAssertEqual(seqs(j.flush()), ["lost 1", "19"])
    }

    func testJitterBufferExtendsSequenceAndTimestampAcrossWrapAround() {
        var j = JitterBuffer()
        var out: [OrderedPacket] = []
        for (seq, ts) in [(UInt16(65_534), UInt32.max - 1_000), (65_535, UInt32.max - 40), (0, 920), (1, 1_880)] {
            for o in j.push(sequence: seq, timestamp: ts, marker: true, payload: [1]) { if case .packet(let p) = o { out.append(p) } }
        }
        XCTAssertEqual(out.map(\.sequence), [65_534, 65_535, 65_536, 65_537])
        XCTAssertEqual(out.map(\.timestamp), [4_294_966_295, 4_294_967_255, 4_294_968_216, 4_294_969_176])
    }

    // MARK: Opus (RFC 7587)

    func testOpusFrameIsThePayloadAndLossIsAGap() {
        var d = OpusDepacketizer()
        XCTAssertEqual(d.push(packet(1, 960, [0xF8, 0xFF, 0xFE])), MediaFrame(timestamp: 960, data: [0xF8, 0xFF, 0xFE], isKeyframe: true, arrivalNanos: 0))
        XCTAssertNil(d.push(.lost(count: 1)))
        XCTAssertEqual(d.push(packet(3, 2880, [0xF8]))?.timestamp, 2880)
    }

    // MARK: VP8 (RFC 7741)

    func testVP8DescriptorsTableDriven() {
        let cases: [(name: String, bytes: [UInt8], offset: Int?, starts: Bool)] = [
            ("minimal, S=1 PID=0", [0x10, 0x9D], 1, true),
            ("S=0 continuation", [0x00, 0x01], 1, false),
            ("S=1 but PID=1", [0x11, 0x01], 1, false),
            ("X with 7-bit PictureID", [0x90, 0x80, 0x05, 0x9D], 3, true),
            ("X with 15-bit PictureID", [0x90, 0x80, 0x85, 0x22, 0x9D], 4, true),
            ("X with PictureID, TL0PICIDX, TID/KEYIDX", [0x90, 0xF0, 0x85, 0x22, 0x07, 0x40, 0x9D], 6, true),
            ("empty", [], nil, false),
            ("X byte missing", [0x90], nil, false),
            ("descriptor with no payload", [0x90, 0x80, 0x05], nil, false),
        ]
        for c in cases {
            let r = VP8Depacketizer.parseDescriptor(c.bytes)
            XCTAssertEqual(r?.payloadOffset, c.offset, c.name)
            if c.offset != nil { XCTAssertEqual(r?.startsFrame, c.starts, c.name) }
        }
    }

    func testVP8FramesKeyframesAndLossWaitsForTheNextKeyframe() {
        var d = VP8Depacketizer()
        // Keyframe (frame tag bit 0 = 0) in two packets.
        XCTAssertNil(d.push(packet(1, 0, marker: false, [0x10, 0x50, 0x01])))
        let key = d.push(packet(2, 0, [0x00, 0x02, 0x03]))
        XCTAssertEqual(key?.data, [0x50, 0x01, 0x02, 0x03])
        XCTAssertEqual(key?.isKeyframe, true)
        // Interframe (bit 0 = 1).
        XCTAssertEqual(d.push(packet(3, 3000, [0x10, 0x51, 0x09]))?.isKeyframe, false)
        // The first packet of the next frame is lost: its rest, and the interframes after, are dropped.
        XCTAssertNil(d.push(.lost(count: 1)))
        XCTAssertNil(d.push(packet(5, 6000, [0x00, 0x07])))
        XCTAssertNil(d.push(packet(6, 9000, [0x10, 0x51, 0x0A])))
        // The next keyframe brings frames back.
        XCTAssertEqual(d.push(packet(7, 12000, [0x90, 0x80, 0x05, 0x50, 0x0B]))?.data, [0x50, 0x0B])
        XCTAssertEqual(d.push(packet(8, 15000, [0x10, 0x51, 0x0C]))?.data, [0x51, 0x0C])
    }

    func testVP8StreamStartingWithAnInterframeWaitsForAKeyframe() {
        var d = VP8Depacketizer()
        XCTAssertNil(d.push(packet(1, 0, [0x10, 0x51])))
        XCTAssertNotNil(d.push(packet(2, 3000, [0x10, 0x50])))
    }

    // MARK: H.264 (RFC 6184)

    let sps: [UInt8] = [0x67, 0x42, 0xC0, 0x1E], pps: [UInt8] = [0x68, 0xCE, 0x3C, 0x80]
    let start: [UInt8] = [0, 0, 0, 1]

    func testH264SingleNALStapAAndFuA() {
        var d = H264Depacketizer()
        // STAP-A with SPS and PPS, then an IDR slice in three FU-A fragments.
        let stap: [UInt8] = [0x78, 0, UInt8(sps.count)] + sps + [0, UInt8(pps.count)] + pps
        XCTAssertNil(d.push(packet(1, 0, marker: false, stap)))
        XCTAssertNil(d.push(packet(2, 0, marker: false, [0x7C, 0x85, 0xAA])))
        XCTAssertNil(d.push(packet(3, 0, marker: false, [0x7C, 0x05, 0xBB])))
        let idr = d.push(packet(4, 0, [0x7C, 0x45, 0xCC]))
        XCTAssertEqual(idr?.data, start + sps + start + pps + start + [0x65, 0xAA, 0xBB, 0xCC])
        XCTAssertEqual(idr?.isKeyframe, true)
        XCTAssertEqual(d.parameterSets, start + sps + start + pps)
        // A single-NAL non-IDR slice.
        let p = d.push(packet(5, 3000, [0x41, 0x9A, 0x01]))
        XCTAssertEqual(p?.data, start + [0x41, 0x9A, 0x01])
        XCTAssertEqual(p?.isKeyframe, false)
    }

    func testH264LostFragmentDropsTheFrameUntilTheNextIDR() {
        var d = H264Depacketizer()
        XCTAssertNotNil(d.push(packet(1, 0, [0x65, 0x88])))
        // FU-A whose start was lost.
        XCTAssertNil(d.push(.lost(count: 1)))
        XCTAssertNil(d.push(packet(3, 3000, [0x7C, 0x41, 0xBB])))
        XCTAssertNil(d.push(packet(4, 6000, [0x41, 0x9A])))
        XCTAssertNotNil(d.push(packet(5, 9000, [0x65, 0x88])))
    }

    func testH264MalformedPayloadsAreDroppedTableDriven() {
        let cases: [(String, [UInt8])] = [
            ("STAP-A size past the end", [0x78, 0, 9, 0x67]),
            ("FU-A without a fragment", [0x7C, 0x85]),
            ("FU-A continuation first", [0x7C, 0x05, 0xAA]),
            ("STAP-B (interleaved mode)", [0x79, 0, 0, 0, 1, 0x65]),
            ("empty", []),
        ]
        for (name, bytes) in cases {
            var d = H264Depacketizer()
            XCTAssertNil(d.push(packet(1, 0, bytes)), name)
        }
    }
}
