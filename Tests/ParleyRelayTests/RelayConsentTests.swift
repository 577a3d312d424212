import XCTest
import ParleyTestSupport
import Glibc
import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySRTP
import ParleySTUN
@testable import ParleyRelay

/// Finding 3 of #14 (a replayed STUN Binding moved a session) and the latching
/// rules that replace it: media moves to a new address only after the relay's
/// consent check there is answered, or an SRTP packet from there
/// authenticates and is no replay; SRTCP from the media port + 1 latches the
/// RTCP address (ffmpeg).
final class RelayConsentTests: XCTestCase {
    func testReplayedBindingFromAnotherAddressDoesNotMoveMedia() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.opus()])
        let (b, cb) = try f.join("r", [], receiving: [a])
        // B refreshes its binding; an attacker on the path captures the request...
        let captured = cb.bindingRequest(ufrag: b.ufrag, password: b.password)
        cb.send(captured, to: f.mediaAddress)
        XCTAssertEqual(cb.receive { $0.first == 0x01 }.map { Array($0[0..<2]) }, [0x01, 0x01])
        // ...and resends it, byte for byte, from its own address.
        let attacker = TestClient()
        attacker.send(captured, to: f.mediaAddress)
        let answer = try XCTUnwrap(attacker.receive { $0.first.map { $0 < 4 } ?? false })
        XCTAssertEqual(Array(answer[0..<2]), [0x01, 0x01], "answered as a retransmission (RFC 8489 §6.3.4)")
        XCTAssertEqual(f.counter("parley_relay_stun_replays_total"), 1)

        let ssrc = a.tracks[0].ssrc
        for seq in UInt16(1)...5 {
            let p = rtpPacket(ssrc: ssrc, seq: seq, pt: 111, payload: payload(ssrc: ssrc, seq: seq))
            ca.send(p, to: f.mediaAddress)
            XCTAssertEqual(cb.receive(where: isRTP), p, "B still gets the media")
        }
        XCTAssertEqual(attacker.drain().count, 0, "no consent check and no media at the replaying address")
        XCTAssertEqual(try f.stats("r").participants.first { $0.name == b.name }?.address, cb.address.description)
        XCTAssertEqual(f.counter("parley_relay_consent_requests_total"), 2, "only the two joins were checked")
    }

    func testNewAddressThatAnswersTheConsentCheckGetsMedia() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.opus()])
        let (b, cb) = try f.join("r", [], receiving: [a])
        // B's NAT binding changes: it binds from a new address and answers the check there.
        let moved = TestClient()
        XCTAssertNotNil(moved.bind(to: f.mediaAddress, grant: b))
        f.waitUntilLatched("r", b.name, moved)
        XCTAssertTrue(f.events.all.contains(.participantLatched(room: "r", name: b.name, address: moved.address.description)))

        let ssrc = a.tracks[0].ssrc
        for seq in UInt16(1)...5 {
            let p = rtpPacket(ssrc: ssrc, seq: seq, pt: 111, payload: payload(ssrc: ssrc, seq: seq))
            ca.send(p, to: f.mediaAddress)
            XCTAssertEqual(moved.receive(where: isRTP), p)
        }
        XCTAssertEqual(cb.drain().filter(isRTP).count, 0, "nothing to the old address")
        XCTAssertEqual(f.counter("parley_relay_consent_checks_total", [("result", "succeeded")]), 3)
        XCTAssertEqual(f.counter("parley_relay_consent_checks_total", [("result", "failed")]), 0)
    }

    /// A participant points its media at a victim: it sends an authenticated
    /// Binding with the victim's address as source. (Loopback cannot spoof,
    /// so the victim's own socket carries B's request: the relay sees the
    /// same datagram.) The victim does not know B's consent credentials and
    /// never answers: it gets the Binding response and the bounded consent
    /// checks, and not one media packet.
    func testSpoofedVictimAddressThatDoesNotAnswerNeverReceivesMedia() throws {
        let attempts = 4
        let f = try RelayFixture {
            $0.consentRetransmitInterval = .milliseconds(50)
            $0.consentMaxAttempts = attempts
        }
        let (a, ca) = try f.join("r", [.video()])
        let (b, cb) = try f.join("r", [], receiving: [a])
        let victim = TestClient()
        victim.send(victim.bindingRequest(ufrag: b.ufrag, password: b.password), to: f.mediaAddress)

        // A streams while the relay checks the victim's address, until it gives up.
        let ssrc = a.tracks[0].ssrc
        var seq: UInt16 = 0
        while f.counter("parley_relay_consent_checks_total", [("result", "failed")]) == 0 {
            seq += 1
            let p = rtpPacket(ssrc: ssrc, seq: seq, timestamp: UInt32(seq) * 3000, payload: payload(ssrc: ssrc, seq: seq, size: 1000))
            ca.send(p, to: f.mediaAddress)
            XCTAssertEqual(cb.receive(where: isRTP), p, "B keeps its media")
            usleep(5000)
            if seq > 2000 { return XCTFail("the consent check never gave up") }
        }
        seq += 1
        let last = rtpPacket(ssrc: ssrc, seq: seq, payload: payload(ssrc: ssrc, seq: seq))
        ca.send(last, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), last)

        let atVictim = victim.drain()
        let requests = atVictim.filter { $0.count >= 2 && $0[0] == 0x00 && $0[1] == 0x01 }
        let responses = atVictim.filter { $0.count >= 2 && $0[0] == 0x01 }
        XCTAssertEqual(requests.count, attempts, "the consent check, retransmitted up to the bound")
        XCTAssertEqual(responses.count, 1, "the answer to the (spoofed) request")
        XCTAssertEqual(atVictim.count, attempts + 1, "no RTP or RTCP ever reached the victim")
        XCTAssertEqual(try f.stats("r").participants.first { $0.name == b.name }?.address, cb.address.description)
        XCTAssertEqual(f.counter("parley_relay_consent_requests_total"), 2 + attempts)
    }

    func testReplayedSRTPFromANewAddressDoesNotMoveMedia() throws {
        let f = try RelayFixture()
        let ka = RelaySRTPTests.Keys(), kb = RelaySRTPTests.Keys()
        // A is an RTP tool without STUN (ffmpeg): its SRTP latches it.
        let a = try f.add("r", [.video()], crypto: try ka.relayHook())
        let (b, cb) = try f.join("r", [], crypto: try kb.relayHook(), receiving: [a])
        let aOut = try ka.clientSend(), bOut = try kb.clientSend()
        let ssrc = a.tracks[0].ssrc
        let ca = TestClient()
        var sent: [[UInt8]] = []
        for seq in UInt16(1)...3 {
            sent.append(try aOut.protect(rtpPacket(ssrc: ssrc, seq: seq, timestamp: UInt32(seq) * 3000, payload: payload(ssrc: ssrc, seq: seq))))
            ca.send(sent.last!, to: f.mediaAddress)
            XCTAssertNotNil(cb.receive(where: isRTP))
        }
        f.waitUntilLatched("r", a.name, ca)

        // An attacker replays A's last packet from its own address: no latch.
        let attacker = TestClient()
        attacker.send(sent[2], to: f.mediaAddress)
        waitUntil("replay dropped") { f.counter("parley_relay_dropped_total", [("reason", "auth_failed")]) == 1 }
        XCTAssertEqual(try f.stats("r").participants.first { $0.name == a.name }?.address, ca.address.description)
        // What goes to A (here B's keyframe request) still goes to A.
        cb.send(try bOut.protect(encoded(RTCPPictureLossIndication(senderSSRC: 0xB, mediaSSRC: ssrc)), rtcp: true), to: f.mediaAddress)
        XCTAssertNotNil(ca.receive(where: isRTCP), "the PLI reaches A")
        XCTAssertEqual(attacker.drain().count, 0)
        XCTAssertEqual(cb.drain().filter(isRTP).count, 0, "the replay was not forwarded")

        // A fresh packet from a new address does move A (the ffmpeg path stays).
        let moved = TestClient()
        moved.send(try aOut.protect(rtpPacket(ssrc: ssrc, seq: 4, timestamp: 12000, payload: payload(ssrc: ssrc, seq: 4))), to: f.mediaAddress)
        XCTAssertNotNil(cb.receive(where: isRTP))
        f.waitUntilLatched("r", a.name, moved)
    }

    /// With `srtpLatching` off, only consent checks move media: an
    /// authenticated SRTP packet from an unlatched address is dropped.
    func testSRTPLatchingCanBeTurnedOff() throws {
        let f = try RelayFixture { $0.srtpLatching = false }
        let ka = RelaySRTPTests.Keys()
        let a = try f.add("r", [.video()], crypto: try ka.relayHook())
        let (_, cb) = try f.join("r", [], receiving: [a])
        let aOut = try ka.clientSend()
        let ssrc = a.tracks[0].ssrc
        let ca = TestClient()
        ca.send(try aOut.protect(rtpPacket(ssrc: ssrc, seq: 1, payload: payload(ssrc: ssrc, seq: 1))), to: f.mediaAddress)
        waitUntil("dropped") { f.counter("parley_relay_dropped_total", [("reason", "unknown_source")]) == 1 }
        XCTAssertNil(try f.stats("r").participants.first { $0.name == a.name }?.address)
        // A consents with STUN; then its SRTP flows.
        XCTAssertNotNil(ca.bind(to: f.mediaAddress, grant: a))
        f.waitUntilLatched("r", a.name, ca)
        let p = rtpPacket(ssrc: ssrc, seq: 2, payload: payload(ssrc: ssrc, seq: 2))
        ca.send(try aOut.protect(p), to: f.mediaAddress)
        XCTAssertNotNil(cb.receive(where: isRTP))
    }

    /// The ffmpeg RTCP bug of #14: ffmpeg sends RTCP from its RTP port + 1.
    /// SRTCP from there that authenticates with the participant's key latches
    /// its RTCP address; what the relay sends as RTCP then goes there.
    func testSRTCPFromTheMediaPortPlusOneLatchesTheRTCPAddress() throws {
        let f = try RelayFixture { $0.housekeepingInterval = .seconds(3600) }
        let ka = RelaySRTPTests.Keys(), kb = RelaySRTPTests.Keys()
        let a = try f.add("r", [.video()], crypto: try ka.relayHook())
        let (b, cb) = try f.join("r", [], crypto: try kb.relayHook(), receiving: [a])
        let aOut = try ka.clientSend(), bOut = try kb.clientSend(), bIn = try kb.clientReceive()
        let ssrc = a.tracks[0].ssrc
        let (rtp, rtcp) = TestClient.rtpAndRTCPPair()
        rtp.send(try aOut.protect(rtpPacket(ssrc: ssrc, seq: 1, timestamp: 3000, payload: payload(ssrc: ssrc, seq: 1))), to: f.mediaAddress)
        XCTAssertNotNil(cb.receive(where: isRTP))
        f.waitUntilLatched("r", a.name, rtp)

        // Forged SRTCP from port + 1 latches nothing.
        let sr = encoded(RTCPSenderReport(ssrc: ssrc, ntpTimestamp: 0xE000_0000_0000_0000, rtpTimestamp: 3000, packetCount: 1, octetCount: 160))
        let forger = try SRTPContext(material: .random(), direction: .outbound)
        rtcp.send(try forger.protect(sr, rtcp: true), to: f.mediaAddress)
        waitUntil("forgery dropped") { f.counter("parley_relay_dropped_total", [("reason", "auth_failed")]) == 1 }
        XCTAssertEqual(f.counter("parley_relay_rtcp_latches_total"), 0)

        // A's genuine SR from port + 1 latches A's RTCP address and reaches B.
        rtcp.send(try aOut.protect(sr, rtcp: true), to: f.mediaAddress)
        let forwarded = try XCTUnwrap(cb.receive(where: isRTCP))
        XCTAssertEqual(try bIn.unprotect(forwarded, rtcp: true), sr)
        XCTAssertEqual(f.counter("parley_relay_rtcp_latches_total"), 1)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "unknown_source")]), 0)

        // RTCP to A now goes to port + 1: B's keyframe request and the relay's receiver report.
        cb.send(try bOut.protect(encoded(RTCPPictureLossIndication(senderSSRC: 0xB, mediaSSRC: ssrc)), rtcp: true), to: f.mediaAddress)
        XCTAssertNotNil(rtcp.receive(where: isRTCP), "the PLI")
        let w = f.relay.workers[0]
        try w.loop.submit { w.runHousekeeping(checkTimeouts: false) }
        XCTAssertNotNil(rtcp.receive(where: isRTCP), "the receiver report")
        XCTAssertEqual(rtp.drain().filter(isRTCP).count, 0, "no RTCP to the media port any more")
    }
}
