import XCTest
import ParleyTestSupport
import Glibc
import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySRTP
@testable import ParleyRelay
import ParleyTestSupport

/// NACK answers are bounded (issue #14, finding 2): one SRTCP NACK of 290
/// FCI entries, each with BLP 0xffff, made the relay resend about 4,900
/// packets. Now a subscriber is resent a packet at most once per resend
/// interval, and never more bytes than the track forwarded to it.
final class RelayRetransmissionTests: XCTestCase {
    private typealias Keys = RelaySRTPTests.Keys

    /// A room with publisher A (one video track) and subscriber B, both on SRTP.
    private struct Room {
        let f: RelayFixture
        let ssrc: UInt32
        let ca: TestClient, cb: TestClient
        let aOut: SRTPContext, bIn: SRTPContext, bOut: SRTPContext

        init(configure: (inout RelayConfig) -> Void = { _ in }) throws {
            f = try RelayFixture(configure: configure)
            let ka = Keys(), kb = Keys()
            let a: ParticipantGrant, b: ParticipantGrant
            (b, cb) = try f.join("r", [], crypto: try kb.relayHook())
            (a, ca) = try f.join("r", [.video()], crypto: try ka.relayHook(), receivedBy: [b])
            ssrc = a.tracks[0].ssrc
            aOut = try ka.clientSend()
            bIn = try kb.clientReceive()
            bOut = try kb.clientSend()
        }

        func media(_ seq: UInt16) -> [UInt8] {
            rtpPacket(ssrc: ssrc, seq: seq, timestamp: UInt32(seq) * 3000, payload: payload(ssrc: ssrc, seq: seq, size: 1000))
        }

        /// A sends `seqs`; returns the bytes B received for them (SRTP, on the wire).
        func publish(_ seqs: ClosedRange<UInt16>) throws -> Int {
            for seq in seqs { ca.send(try aOut.protect(media(seq)), to: f.mediaAddress) }
            var bytes = 0
            for _ in seqs { bytes += try XCTUnwrap(cb.receive(where: isRTP)).count }
            return bytes
        }

        /// B sends a NACK (SRTCP) for `pairs`.
        func nack(_ pairs: [RTCPNACKPair]) throws {
            cb.send(try bOut.protect(encoded(RTCPGenericNACK(senderSSRC: 0xB, mediaSSRC: ssrc, pairs: pairs)), rtcp: true),
                    to: f.mediaAddress)
        }

        /// Packets requested by NACK so far, whatever became of them.
        var nackRequests: Int {
            ["served", "missed", "duplicate", "over_budget"].reduce(0) {
                $0 + f.counter("parley_relay_nack_packets_total", [("result", $1)])
            }
        }

        /// A sends `seq`; returns the wire bytes of every RTP datagram B got
        /// before it (the relay sends in order, so these are what it resent).
        func bytesBefore(sentinel seq: UInt16) throws -> (bytes: Int, packets: Int) {
            ca.send(try aOut.protect(media(seq)), to: f.mediaAddress)
            var bytes = 0, packets = 0
            while let d = cb.receive(where: isRTP) {
                if seqOf(d) == seq { return (bytes, packets) }
                bytes += d.count
                packets += 1
            }
            XCTFail("the sentinel never came (lost in a flood of \(packets) packets?)")
            return (bytes, packets)
        }
    }

    func testNACKFloodResendsNoMoreThanTheSubscriberReceived() throws {
        let room = try Room()
        let received = try room.publish(1...300)

        // The attack: 290 entries of 17 packets each (PID + BLP 0xffff), the
        // same 18 blocks over and over, sent five times. 1,186 bytes each.
        let pairs = (0..<290).map { RTCPNACKPair(packetID: UInt16(1 + ($0 % 18) * 17), bitmaskOfLostPackets: 0xffff) }
        let repeats = 5
        for _ in 0..<repeats { try room.nack(pairs) }
        waitUntil("every NACK processed") { room.nackRequests == repeats * 290 * 17 }
        let resent = try room.bytesBefore(sentinel: 301)

        XCTAssertLessThanOrEqual(resent.bytes, 2 * received, "resent \(resent.bytes) bytes for \(received) received")
        XCTAssertLessThanOrEqual(resent.packets, 300, "each packet at most once")
        XCTAssertEqual(room.f.counter("parley_relay_nack_packets_total", [("result", "served")]), resent.packets)
        XCTAssertGreaterThan(room.f.counter("parley_relay_nack_packets_total", [("result", "duplicate")]), 0)

        // A legitimate NACK afterwards is still answered: B lost 310.
        _ = try room.publish(302...311)
        try room.nack([RTCPNACKPair(packetID: 310, bitmaskOfLostPackets: 0)])
        let answer = try XCTUnwrap(room.cb.receive(where: isRTP))
        XCTAssertEqual(try room.bIn.unprotect(answer), room.media(310))
    }

    func testNACKsRepeatedAfterTheResendIntervalAreHeldToTheBudget() throws {
        // A 1 ms interval: each repeat (sent after the last one was processed,
        // and 5 ms later) may be resent again; only the byte budget holds it.
        let room = try Room { $0.retransmissionResendInterval = .milliseconds(1) }
        let received = try room.publish(1...100)
        let pairs = (0..<7).map { RTCPNACKPair(packetID: UInt16(1 + $0 * 17), bitmaskOfLostPackets: 0xffff) } // 1...119
        for i in 1...10 {
            try room.nack(pairs)
            waitUntil("NACK \(i) processed") { room.nackRequests == i * 7 * 17 }
            usleep(5000)
        }
        let resent = try room.bytesBefore(sentinel: 101)
        XCTAssertLessThanOrEqual(resent.bytes, 2 * received, "resent \(resent.bytes) bytes for \(received) received")
        XCTAssertGreaterThan(room.f.counter("parley_relay_nack_packets_total", [("result", "over_budget")]), 0)
        XCTAssertEqual(room.f.counter("parley_relay_nack_packets_total", [("result", "missed")]), 10 * 19, "120...119+19 were never sent")
    }

    func testMutedTrackIsNotResent() throws {
        // Mute means nothing of the track reaches subscribers, NACK answers included.
        let room = try Room()
        _ = try room.publish(1...5)
        try waitFor { room.f.relay.setMuted(room: "r", ssrc: room.ssrc, true, completion: $0) }
        for seq in UInt16(6)...10 { room.ca.send(try room.aOut.protect(room.media(seq)), to: room.f.mediaAddress) }
        waitUntil("muted packets dropped") { room.f.counter("parley_relay_dropped_total", [("reason", "muted")]) == 5 }
        try room.nack([RTCPNACKPair(packetID: 6, bitmaskOfLostPackets: 0xf)])
        waitUntil("NACK processed") { room.nackRequests == 5 }
        XCTAssertEqual(room.f.counter("parley_relay_nack_packets_total", [("result", "missed")]), 5)
        XCTAssertTrue(room.cb.drain().filter(isRTP).isEmpty)
    }
}

/// The budget's rules with explicit times (the relay passes its batch clock).
final class RetransmissionBudgetTests: XCTestCase {
    func testResendIntervalAndByteBudget() {
        let ring = RetransmissionBuffer(slots: 8)
        let budget = RetransmissionBudget(ring: ring)
        let packet = [UInt8](repeating: 0, count: 100)
        packet.withUnsafeBytes { for seq in UInt16(0)..<4 { ring.store($0, sequence: seq, nowMs: 1000) } }
        budget.refill(from: ring, percent: 50) // 400 bytes forwarded: 200 may be resent
        XCTAssertEqual(budget.admit(sequence: 0, bytes: 100, nowMs: 1000, intervalMs: 100), .resend)
        XCTAssertEqual(budget.admit(sequence: 0, bytes: 100, nowMs: 1000, intervalMs: 100), .duplicate)
        XCTAssertEqual(budget.admit(sequence: 1, bytes: 100, nowMs: 1050, intervalMs: 100), .resend)
        XCTAssertEqual(budget.admit(sequence: 2, bytes: 100, nowMs: 1050, intervalMs: 100), .overBudget)
        XCTAssertEqual(budget.admit(sequence: 0, bytes: 100, nowMs: 1099, intervalMs: 100), .duplicate)
        // More media earns more; after the interval seq 0 may go again.
        packet.withUnsafeBytes { for seq in UInt16(4)..<8 { ring.store($0, sequence: seq, nowMs: 1100) } }
        budget.refill(from: ring, percent: 50)
        XCTAssertEqual(budget.admit(sequence: 0, bytes: 100, nowMs: 1100, intervalMs: 100), .resend)
        // A zero interval still resends a packet once per NACK batch (same clock reading).
        XCTAssertEqual(budget.admit(sequence: 0, bytes: 100, nowMs: 1100, intervalMs: 0), .duplicate)
        // Credit is capped at `percent` of what the ring holds: a quiet
        // subscriber cannot bank a burst. 800 bytes held → at most 400.
        packet.withUnsafeBytes { for seq in UInt16(8)..<40 { ring.store($0, sequence: seq, nowMs: 1200) } }
        budget.refill(from: ring, percent: 50)
        var granted = 0
        for seq in UInt16(32)..<40 where budget.admit(sequence: seq, bytes: 100, nowMs: 1200, intervalMs: 100) == .resend { granted += 1 }
        XCTAssertEqual(granted, 4)
    }
}
