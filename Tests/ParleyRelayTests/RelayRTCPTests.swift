import XCTest
import ParleyTestSupport
import Glibc
import ParleyCore
import ParleyIO
import ParleyRTP
@testable import ParleyRelay
import ParleyTestSupport

/// RTCP feedback through the relay: NACKs answered from the retransmission
/// buffer, keyframe requests throttled, SR forwarded, RR generated.
final class RelayRTCPTests: XCTestCase {
    func testNACKFromSubscriberIsAnsweredWithTheOriginalPacket() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.video()])
        let (b, cb) = try f.join("r", [], receiving: [a])
        let ssrc = a.tracks[0].ssrc
        var sent: [UInt16: [UInt8]] = [:]
        for seq in UInt16(100)..<110 {
            let p = rtpPacket(ssrc: ssrc, seq: seq, timestamp: UInt32(seq) * 3000, payload: payload(ssrc: ssrc, seq: seq, size: 1000))
            sent[seq] = p
            ca.send(p, to: f.mediaAddress)
        }
        for _ in 0..<10 { XCTAssertNotNil(cb.receive(where: isRTP)) }

        // B lost 103 and 105 (PID 103, BLP bit 1 = 105).
        let nack = RTCPGenericNACK(senderSSRC: 0x0B0B, mediaSSRC: ssrc, lost: [103, 105])
        cb.send(encoded(nack), to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), sent[103])
        XCTAssertEqual(cb.receive(where: isRTP), sent[105])
        waitUntil("NACK counted") { f.counter("parley_relay_nack_packets_total", [("result", "served")]) == 2 }
        XCTAssertEqual(try f.stats("r").nacksServed, 2)

        // A NACK for packets never sent is counted as missed, and the
        // publisher never sees NACKs (the relay answers them itself).
        cb.send(encoded(RTCPGenericNACK(senderSSRC: 0x0B0B, mediaSSRC: ssrc, lost: [5000])), to: f.mediaAddress)
        waitUntil("miss counted") { f.counter("parley_relay_nack_packets_total", [("result", "missed")]) == 1 }
        let toPublisher = ca.drain().filter { isRTCP($0) && $0[1] == RTCP.PacketType.transportFeedback }
        XCTAssertTrue(toPublisher.isEmpty)
        _ = b
    }

    func testTwoPLIsWithinTheIntervalReachThePublisherOnce() throws {
        // The interval is the default 1 s in production; a long one here makes
        // "within the interval" independent of how fast this machine is.
        let f = try RelayFixture { $0.keyframeRequestInterval = .seconds(60) }
        XCTAssertEqual(RelayConfig().keyframeRequestInterval, .seconds(1))
        // Subscribers first: a subscriber latching after the publisher makes
        // the relay ask for a keyframe itself (testLateJoinerGetsAKeyframeRequest).
        let (b, cb) = try f.join("r", [])
        let (c, cc) = try f.join("r", [])
        let (a, ca) = try f.join("r", [.video()], receivedBy: [b, c])
        let ssrc = a.tracks[0].ssrc
        cb.send(encoded(RTCPPictureLossIndication(senderSSRC: 0xB, mediaSSRC: ssrc)), to: f.mediaAddress)
        cc.send(encoded(RTCPPictureLossIndication(senderSSRC: 0xC, mediaSSRC: ssrc)), to: f.mediaAddress)
        let pli = ca.receive { isRTCP($0) && $0[1] == RTCP.PacketType.payloadFeedback }
        XCTAssertNotNil(pli)
        if let pli {
            let view = try pli.withUnsafeBytes { try RTCPPictureLossIndication(parsing: $0) }
            XCTAssertEqual(view.mediaSSRC, ssrc)
        }
        waitUntil("both PLIs processed") {
            let s = try! f.stats("r")
            return s.keyframeRequestsForwarded + s.keyframeRequestsThrottled == 2
        }
        let s = try f.stats("r")
        XCTAssertEqual(s.keyframeRequestsForwarded, 1)
        XCTAssertEqual(s.keyframeRequestsThrottled, 1)
        // Anything the relay forwarded is already in A's socket buffer by now.
        XCTAssertEqual(ca.drain().filter { isRTCP($0) && $0[1] == RTCP.PacketType.payloadFeedback }.count, 0)
        XCTAssertEqual(f.counter("parley_relay_keyframe_requests_total", [("result", "throttled")]), 1)

        // FIR is a keyframe request too, throttled with PLI.
        cb.send(encoded(RTCPFullIntraRequest(senderSSRC: 0xB, entries: [RTCPFIREntry(ssrc: ssrc, sequenceNumber: 1)])), to: f.mediaAddress)
        waitUntil("FIR throttled") { (try? f.stats("r").keyframeRequestsThrottled) == 2 }
    }

    func testFIRIsForwardedAsFIR() throws {
        let f = try RelayFixture()
        let (b, cb) = try f.join("r", [])
        let (a, ca) = try f.join("r", [.video()], receivedBy: [b])
        let ssrc = a.tracks[0].ssrc
        cb.send(encoded(RTCPFullIntraRequest(senderSSRC: 0xB, entries: [RTCPFIREntry(ssrc: ssrc, sequenceNumber: 7)])), to: f.mediaAddress)
        let fir = try XCTUnwrap(ca.receive { isRTCP($0) && $0[1] == RTCP.PacketType.payloadFeedback })
        let v = try fir.withUnsafeBytes { try RTCPFullIntraRequest(parsing: $0) }
        XCTAssertEqual(v.entries.map(\.ssrc), [ssrc])
    }

    func testLateJoinerGetsAKeyframeRequest() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.opus(), .video()])
        let video = a.tracks[1].ssrc
        // B latches after A: the relay asks A for a keyframe of its video (not audio).
        let (b, _) = try f.join("r", [], receiving: [a])
        let pli = try XCTUnwrap(ca.receive { isRTCP($0) && $0[1] == RTCP.PacketType.payloadFeedback })
        XCTAssertEqual(try pli.withUnsafeBytes { try RTCPPictureLossIndication(parsing: $0) }.mediaSSRC, video)
        XCTAssertEqual(try f.stats("r").keyframeRequestsForwarded, 1)
        // Resubscribing asks again (throttled: within the second it is counted, not sent).
        try waitFor { f.relay.setSubscribed(room: "r", subscriber: b.name, ssrc: video, false, completion: $0) }
        try waitFor { f.relay.setSubscribed(room: "r", subscriber: b.name, ssrc: video, true, completion: $0) }
        let s = try f.stats("r")
        XCTAssertEqual(s.keyframeRequestsForwarded + s.keyframeRequestsThrottled, 2)
    }

    func testSenderReportIsForwardedAndRelaySendsReceiverReports() throws {
        let f = try RelayFixture { $0.housekeepingInterval = .milliseconds(100) }
        let (a, ca) = try f.join("r", [.opus()])
        let (_, cb) = try f.join("r", [], receiving: [a])
        let ssrc = a.tracks[0].ssrc
        for seq in UInt16(1)...10 {
            ca.send(rtpPacket(ssrc: ssrc, seq: seq, timestamp: UInt32(seq) * 960, pt: 111, payload: payload(ssrc: ssrc, seq: seq)), to: f.mediaAddress)
        }
        // Seq 11 is lost, 12 arrives.
        ca.send(rtpPacket(ssrc: ssrc, seq: 12, timestamp: 12 * 960, pt: 111, payload: payload(ssrc: ssrc, seq: 12)), to: f.mediaAddress)
        let sr = RTCPSenderReport(ssrc: ssrc, ntpTimestamp: 0xE000_0000_8000_0000, rtpTimestamp: 12 * 960, packetCount: 11, octetCount: 1760)
        var compound = encoded(sr)
        compound += encoded(RTCPSourceDescription(ssrc: ssrc, cname: "alice"))
        ca.send(compound, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTCP), compound, "subscriber gets the publisher's SR byte-exact")

        // The relay's RR to A reports on A's SSRC from its own statistics.
        // Skip RRs the timer built before everything above was processed.
        var block: RTCPReportBlock?
        while block == nil, let rrBytes = ca.receive(where: { isRTCP($0) && $0[1] == RTCP.PacketType.receiverReport }) {
            let rr = try rrBytes.withUnsafeBytes { try RTCPReceiverReport(parsing: $0) }
            if let b = rr.reports.first(where: { $0.ssrc == ssrc }), b.extendedHighestSequence == 12, b.lastSenderReport != 0 { block = b }
        }
        let b = try XCTUnwrap(block, "an RR covering seq 12 and the SR")
        XCTAssertEqual(b.extendedHighestSequence, 12)
        XCTAssertEqual(b.cumulativeLost, 1)
        XCTAssertEqual(b.lastSenderReport, 0x0000_8000, "LSR is the middle 32 bits of the SR's NTP time")
        XCTAssertGreaterThan(f.counter("parley_relay_receiver_reports_total"), 0)
    }
}
