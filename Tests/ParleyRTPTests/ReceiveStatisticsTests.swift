import XCTest
@testable import ParleyRTP

final class ReceiveStatisticsTests: XCTestCase {
    let ms: UInt64 = 1_000_000

    /// Feeds sequence numbers with on-time arrivals (20 ms apart, 48 kHz).
    func feed(_ s: inout RTPReceiveStatistics, _ seqs: [UInt16]) -> [Bool] {
        seqs.map { seq in
            let i = UInt64(seq)
            return s.update(sequenceNumber: seq, timestamp: UInt32(truncatingIfNeeded: i * 960), arrivalTime: 1_000 * ms + i * 20 * ms)
        }
    }

    func testRFC3550A1ProbationNeedsTwoSequentialPackets() {
        var s = RTPReceiveStatistics(clockRate: 48000)
        XCTAssertEqual(feed(&s, [10]), [false])
        XCTAssertFalse(s.isValid)
        XCTAssertEqual(feed(&s, [11, 12, 13]), [true, true, true])
        XCTAssertTrue(s.isValid)
        XCTAssertEqual(s.baseSequence, 11, "A.1: init_seq runs on the packet that ends probation")
        XCTAssertEqual(s.expected, 3)
        XCTAssertEqual(s.cumulativeLost, 0)
    }

    func testRFC3550A1ProbationRestartsOnGap() {
        var s = RTPReceiveStatistics(clockRate: 48000)
        XCTAssertEqual(feed(&s, [10, 20, 21, 22]), [false, false, true, true])
        XCTAssertEqual(s.baseSequence, 21)
    }

    func testRFC3550A3LossAndFractionLost() {
        var s = RTPReceiveStatistics(clockRate: 48000, probation: 0)
        XCTAssertEqual(feed(&s, [100, 101, 103, 104]), [true, true, true, true])
        XCTAssertEqual(s.expected, 5)
        XCTAssertEqual(s.cumulativeLost, 1)
        let block = s.makeReportBlock(ssrc: 42, now: 0)
        XCTAssertEqual(block.ssrc, 42)
        XCTAssertEqual(block.fractionLost, 51, "1 of 5 lost = 256/5")
        XCTAssertEqual(block.cumulativeLost, 1)
        XCTAssertEqual(block.extendedHighestSequence, 104)
        // New interval with nothing new: fraction resets, cumulative stays.
        let again = s.makeReportBlock(ssrc: 42, now: 0)
        XCTAssertEqual(again.fractionLost, 0)
        XCTAssertEqual(again.cumulativeLost, 1)
        // Next interval: 105..108 all arrive but 106.
        _ = feed(&s, [105, 107, 108])
        let third = s.makeReportBlock(ssrc: 42, now: 0)
        XCTAssertEqual(third.fractionLost, 64, "1 of 4 lost = 256/4")
        XCTAssertEqual(third.cumulativeLost, 2)
    }

    func testRFC3550A1SequenceWrapCountsCycles() {
        var s = RTPReceiveStatistics(clockRate: 48000, probation: 0)
        _ = feed(&s, [65534, 65535, 0, 1])
        XCTAssertEqual(s.cycles, 65536)
        XCTAssertEqual(s.extendedHighestSequence, 65537)
        XCTAssertEqual(s.expected, 4)
        XCTAssertEqual(s.cumulativeLost, 0)
        // A late packet from before the wrap does not move the highest sequence.
        _ = feed(&s, [65535])
        XCTAssertEqual(s.extendedHighestSequence, 65537)
        XCTAssertEqual(s.cumulativeLost, -1, "duplicates make cumulative loss negative (§6.4.1)")
        XCTAssertEqual(s.makeReportBlock(ssrc: 1, now: 0).cumulativeLost, -1)
    }

    func testRFC3550A1LargeJumpNeedsConfirmation() {
        var s = RTPReceiveStatistics(clockRate: 48000, probation: 0)
        XCTAssertEqual(feed(&s, [1, 2, 10000]), [true, true, false], "jump past MAX_DROPOUT is not trusted yet")
        XCTAssertEqual(s.extendedHighestSequence, 2)
        XCTAssertEqual(feed(&s, [10001]), [true], "a second sequential packet confirms a restart")
        XCTAssertEqual(s.baseSequence, 10001)
        XCTAssertEqual(s.expected, 1)
        XCTAssertEqual(s.received, 1)
    }

    func testRFC3550A8Jitter() {
        var s = RTPReceiveStatistics(clockRate: 48000, probation: 0)
        let t0: UInt64 = 5_000 * ms
        for i in 0..<10 as Range<UInt64> {
            s.update(sequenceNumber: UInt16(i), timestamp: UInt32(i * 960), arrivalTime: t0 + i * 20 * ms)
        }
        XCTAssertEqual(s.jitter, 0, "constant transit time means no jitter")
        // One packet 10 ms (480 units) late: J = 480/16 = 30.
        s.update(sequenceNumber: 10, timestamp: 9600, arrivalTime: t0 + 210 * ms)
        XCTAssertEqual(s.jitter, 30)
        // Back on time: |D| = 480 again: J16 = 480 + 480 - 30 = 930 → 58.
        s.update(sequenceNumber: 11, timestamp: 10560, arrivalTime: t0 + 220 * ms)
        XCTAssertEqual(s.jitter, 58)
        for i in 12..<200 as Range<UInt64> {
            s.update(sequenceNumber: UInt16(i), timestamp: UInt32(i * 960), arrivalTime: t0 + i * 20 * ms)
        }
        XCTAssertEqual(s.jitter, 0, "decays back to zero")
        XCTAssertEqual(s.makeReportBlock(ssrc: 1, now: 0).jitter, 0)
    }

    func testLastSenderReportAndDelay() {
        var s = RTPReceiveStatistics(clockRate: 90000, probation: 0)
        _ = s.update(sequenceNumber: 1, timestamp: 0, arrivalTime: 1_000 * ms)
        XCTAssertEqual(s.makeReportBlock(ssrc: 9, now: 2_000 * ms).lastSenderReport, 0, "no SR yet")
        s.senderReportReceived(ntpTimestamp: 0xAAAA_BBBB_CCCC_DDDD, arrivalTime: 5_000 * ms)
        let block = s.makeReportBlock(ssrc: 9, now: 5_500 * ms)
        XCTAssertEqual(block.lastSenderReport, 0xBBBB_CCCC, "middle 32 bits of the NTP timestamp")
        XCTAssertEqual(block.delaySinceLastSenderReport, 32768, "0.5 s in 1/65536 s units")
    }

    func testReportBlockFromStatisticsEncodesInReceiverReport() throws {
        var s = RTPReceiveStatistics(clockRate: 90000, probation: 0)
        _ = feed(&s, [1, 2, 4])
        let rr = RTCPReceiverReport(ssrc: 77, reports: [s.makeReportBlock(ssrc: 5, now: 0)])
        let parsed = try parseCompound(try rr.encoded())
        XCTAssertEqual(parsed, [.receiverReport(rr)])
        XCTAssertEqual(rr.reports[0].cumulativeLost, 1)
        XCTAssertEqual(rr.reports[0].fractionLost, 64)
    }
}
