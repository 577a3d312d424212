import Foundation
import XCTest
@testable import ParleyRTP
import ParleyTestSupport

/// Transport-wide feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1)
/// as `TransportFeedbackRecorder` writes it, read back by tshark's RTCP
/// dissector (a parser nobody here wrote) and by the draft's layout.
final class TransportFeedbackTests: XCTestCase {
    /// Arrivals (µs) by sequence number: a gap (103, 104 lost), a small
    /// delta, a large one (120 ms), reordering (108 before 107: a negative delta).
    let arrivals: [(UInt16, Int64)] = [
        (100, 1_000_000), (101, 1_000_250), (102, 1_005_000), (105, 1_010_000), (106, 1_130_000),
        (107, 1_129_000), (108, 1_131_000), (109, 1_131_000),
    ]

    func feedback(_ r: inout TransportFeedbackRecorder) -> [UInt8] {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 4)
        defer { buf.deallocate() }
        let n = r.writeFeedback(senderSSRC: 0x1111_2222, mediaSSRC: 0x3333_4444, into: buf)
        return Array(buf[0..<n])
    }

    /// The draft's layout, decoded here: (base, statuses, arrival µs of each received packet, fb count).
    func decode(_ p: [UInt8]) -> (base: UInt16, statuses: [UInt8], times: [Int64], count: UInt8)? {
        guard p.count >= 20, p[0] & 0x1F == 15, p[1] == 205 else { return nil }
        let u16 = { (o: Int) in UInt16(p[o]) << 8 | UInt16(p[o + 1]) }
        let end = p[0] & 0x20 != 0 ? p.count - Int(p[p.count - 1]) : p.count
        let base = u16(12), n = Int(u16(14))
        var ref = Int64(Int32(bitPattern: UInt32(p[16]) << 24 | UInt32(p[17]) << 16 | UInt32(p[18]) << 8) >> 8)
        ref *= 64_000
        var statuses: [UInt8] = []
        var off = 20
        while statuses.count < n {
            let c = u16(off); off += 2
            if c & 0x8000 == 0 {
                statuses += Array(repeating: UInt8((c >> 13) & 3), count: Int(c & 0x1FFF))
            } else if c & 0x4000 == 0 {
                for k in 0..<14 { statuses.append(UInt8((c >> UInt16(13 - k)) & 1)) }
            } else {
                for k in 0..<7 { statuses.append(UInt8((c >> UInt16(12 - 2 * k)) & 3)) }
            }
        }
        statuses = Array(statuses.prefix(n))
        var times: [Int64] = []
        var t = ref
        for s in statuses where s != 0 {
            if s == 1 { t += Int64(p[off]) * 250; off += 1 } else { t += Int64(Int16(bitPattern: u16(off))) * 250; off += 2 }
            times.append(t)
        }
        XCTAssertEqual(off, end, "chunks and deltas fill the packet up to its padding")
        return (base, statuses, times, p[19])
    }

    func testFeedbackFollowsTheDraftLayout() throws {
        var r = TransportFeedbackRecorder()
        for (s, t) in arrivals { r.record(s, arrivalMicroseconds: t) }
        let p = feedback(&r)
        XCTAssertEqual(p.count % 4, 0)
        XCTAssertEqual(Int(UInt16(p[2]) << 8 | UInt16(p[3])), p.count / 4 - 1, "RTCP length")
        let d = try XCTUnwrap(decode(p))
        XCTAssertEqual(d.base, 100)
        XCTAssertEqual(d.statuses, [1, 1, 1, 0, 0, 1, 2, 2, 1, 1], "small, lost, large (120 ms) and negative (reordered) deltas")
        // Arrival times come back to the 250 µs tick, in sequence order.
        let expected = arrivals.sorted { $0.0 < $1.0 }.map(\.1)
        XCTAssertEqual(d.times.count, expected.count)
        for (a, b) in zip(d.times, expected) { XCTAssertLessThanOrEqual(abs(a - b), 250, "\(d.times) vs \(expected)") }
        XCTAssertEqual(d.count, 0)
        // Reported once: nothing pending, then the next feedback continues where this one ended, with the next count.
        XCTAssertFalse(r.hasPending)
        XCTAssertTrue(feedback(&r).isEmpty)
        r.record(110, arrivalMicroseconds: 1_200_000)
        r.record(99, arrivalMicroseconds: 1_200_100) // already reported as lost-or-earlier: ignored
        let next = try XCTUnwrap(decode(feedback(&r)))
        XCTAssertEqual(next.base, 110)
        XCTAssertEqual(next.statuses, [1])
        XCTAssertEqual(next.count, 1)
    }

    func testTsharkReadsTheFeedback() throws {
        var r = TransportFeedbackRecorder()
        for (s, t) in arrivals { r.record(s, arrivalMicroseconds: t) }
        var pcap = UDPPcap()
        pcap.append(feedback(&r), from: 40001, to: 5005)
        let text = try tshark(pcap, ["-o", "rtcp.heuristic_rtcp:TRUE", "-d", "udp.port==5005,rtcp", "-V"])
        assertCleanDissection(text)
        for line in ["Transport-wide Congestion Control (Transport-cc) (15)", "Sender SSRC: 0x11112222", "Media source SSRC: 0x33334444",
                     "Base Sequence Number: 100", "Packet Status Count: 10", "Reference Time: 15", "Feedback Packets Count: 0",
                     // Each packet's status (SD small delta, NR not received, LD large or negative delta) and arrival delta.
                     "| SD | SD | SD | NR | NR | SD | LD |", "| LD | SD | SD | __ | __ | __ | __ |",
                     "[seq: 100] 40.000000 ms", "[seq: 101] 0.250000 ms", "[seq: 106] 120.000000 ms", "[seq: 107] -1.000000 ms",
                     "[seq: 109] 0.000000 ms", "RTCP frame length check: OK"] {
            XCTAssertTrue(text.contains(line), "tshark shows \(line):\n\(text)")
        }
        if ProcessInfo.processInfo.environment["PARLEY_SHOW_TSHARK"] != nil { print(text) }
    }

    func testSizeIsBoundedAndOldPacketsAreGivenUp() {
        var r = TransportFeedbackRecorder()
        // 3,000 packets without a feedback: only the last window is kept.
        for s in 0..<3000 { r.record(UInt16(s), arrivalMicroseconds: 1_000_000 + Int64(s) * 1000) }
        XCTAssertEqual(r.forgotten, 3000 - TransportFeedbackRecorder.window)
        var total = 0, packets = 0
        while true {
            let p = feedback(&r)
            if p.isEmpty { break }
            XCTAssertLessThanOrEqual(p.count, 1200)
            guard let d = decode(p) else { return XCTFail("undecodable") }
            XCTAssertLessThanOrEqual(d.statuses.count, TransportFeedbackRecorder.maxStatuses)
            total += d.statuses.count
            packets += 1
        }
        XCTAssertEqual(total, TransportFeedbackRecorder.window)
        XCTAssertEqual(packets, (TransportFeedbackRecorder.window + 499) / 500)
        // Wrapping sequence numbers unwrap.
        var w = TransportFeedbackRecorder()
        w.record(65535, arrivalMicroseconds: 5_000_000)
        w.record(0, arrivalMicroseconds: 5_000_500)
        XCTAssertEqual(decode(feedback(&w))?.statuses, [1, 1])
    }
}

final class HeaderExtensionRewriteTests: XCTestCase {
    func testElementsAreRenumberedOrPadded() throws {
        // Publisher: audio level 1, abs-send-time 2, transport seq 3, mid 4, and an id nobody knows (9).
        let from = RTPHeaderExtensionMap(mid: 4, absSendTime: 2, transportSequence: 3, audioLevel: 1)
        let to = RTPHeaderExtensionMap(mid: 9, absSendTime: 5, transportSequence: 6, audioLevel: 7)
        let pkt = RTPPacket(header: RTPHeader(payloadType: 111, sequenceNumber: 1, timestamp: 2, ssrc: 3,
                                              extensionProfile: RTP.oneByteExtensionProfile,
                                              extensions: [RTPHeaderExtension(id: 1, data: [0x85]),
                                                           RTPHeaderExtension(id: 2, data: [1, 2, 3]),
                                                           RTPHeaderExtension(id: 3, data: [0x12, 0x34]),
                                                           RTPHeaderExtension(id: 4, data: Array("0".utf8)),
                                                           RTPHeaderExtension(id: 9, data: [7, 7])]),
                            payload: [1, 2, 3, 4])
        var bytes = try pkt.encoded()
        let n = bytes.count
        var seq: UInt16 = 500
        bytes.withUnsafeMutableBytes { to.rewrite($0, length: n, from: from, transportSequence: &seq, absSendTime: 0xABCDEF) }
        XCTAssertEqual(seq, 501)
        XCTAssertEqual(bytes.count, n)
        let elements = try bytes.withUnsafeBytes { b in
            try RTPPacketView(parsing: b).extensions.map { ($0.id, Array($0.data)) }
        }
        XCTAssertEqual(elements.map(\.0), [7, 5, 6], "mid and the unknown id became padding")
        XCTAssertEqual(elements[0].1, [0x85])
        XCTAssertEqual(elements[1].1, [0xAB, 0xCD, 0xEF], "abs-send-time is the relay's")
        XCTAssertEqual(elements[2].1, [0x01, 0xF4], "the subscriber's own transport-wide sequence number")
        XCTAssertEqual(Array(bytes.suffix(4)), [1, 2, 3, 4], "payload untouched")
    }
}
