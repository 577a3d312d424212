import XCTest
import ParleyTestSupport
import Glibc
import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySRTP
@testable import ParleyRelay

/// Hop-by-hop SRTP through the relay with real libsrtp2 contexts (ParleySRTP):
/// each participant has an up-link key (it protects, the relay unprotects)
/// and a down-link key (the relay protects, it unprotects).
final class RelaySRTPTests: XCTestCase {
    struct Keys {
        let up = SRTPKeyMaterial.random(), down = SRTPKeyMaterial.random()
        /// The relay side: up-link context unprotects, down-link context protects
        /// (allowRetransmit: NACK answers resend identical packets).
        func relayHook() throws -> ParticipantCrypto {
            let inbound = try SRTPContext(material: up, direction: .inbound)
            let outbound = try SRTPContext(material: down, direction: .outbound, allowRetransmit: true)
            return ParticipantCrypto(unprotect: { packet, rtcp in
                rtcp ? try? inbound.unprotectRTCP(packet, length: packet.count) : try? inbound.unprotectRTP(packet, length: packet.count)
            }, protect: { buffer, length, rtcp in
                rtcp ? try? outbound.protectRTCP(buffer, length: length) : try? outbound.protectRTP(buffer, length: length)
            })
        }
        func clientSend() throws -> SRTPContext { try SRTPContext(material: up, direction: .outbound) }
        func clientReceive() throws -> SRTPContext { try SRTPContext(material: down, direction: .inbound) }
    }

    func testSRTPIsUnprotectedFromThePublisherAndReprotectedPerSubscriber() throws {
        let f = try RelayFixture()
        let ka = Keys(), kb = Keys()
        // A never does STUN: its first authenticated SRTP packet latches it.
        let a = try f.add("r", [.video()], crypto: try ka.relayHook())
        let ca = TestClient()
        let (_, cb) = try f.join("r", [], crypto: try kb.relayHook(), receiving: [a])
        let aOut = try ka.clientSend(), bIn = try kb.clientReceive(), bOut = try kb.clientSend()
        let ssrc = a.tracks[0].ssrc

        // Forged SRTP (wrong key) from A's future address: dropped, no latch.
        let forger = try SRTPContext(material: .random(), direction: .outbound)
        ca.send(try forger.protect(rtpPacket(ssrc: ssrc, seq: 1, payload: payload(ssrc: ssrc, seq: 1))), to: f.mediaAddress)

        var plain: [[UInt8]] = []
        for seq in UInt16(2)...6 {
            let p = rtpPacket(ssrc: ssrc, seq: seq, timestamp: UInt32(seq) * 3000, payload: payload(ssrc: ssrc, seq: seq, size: 900))
            plain.append(p)
            ca.send(try aOut.protect(p), to: f.mediaAddress)
        }
        for p in plain {
            let got = try XCTUnwrap(cb.receive(where: isRTP))
            XCTAssertNotEqual(got, p, "on the wire it is SRTP")
            if seqOf(p) == 4 { continue } // B "loses" seq 4 (its SRTP replay window never sees it)
            XCTAssertEqual(try bIn.unprotect(got), p, "B decrypts A's packet with B's own down-link key")
        }
        XCTAssertEqual(try f.stats("r").participants.first { $0.name == a.name }?.address, ca.address.description)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "auth_failed")]), 1, "the forged packet")
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "unknown_source")]), 0)

        // B's SRTCP NACK is unprotected with B's up-link key and answered from
        // the plaintext ring, re-protected for B.
        let nack = encoded(RTCPGenericNACK(senderSSRC: 0xB, mediaSSRC: ssrc, lost: [4]))
        cb.send(try bOut.protect(nack, rtcp: true), to: f.mediaAddress)
        let resent = try XCTUnwrap(cb.receive(where: isRTP))
        XCTAssertEqual(try bIn.unprotect(resent), plain[2])
        waitUntil("NACK served") { f.counter("parley_relay_nack_packets_total", [("result", "served")]) == 1 }
    }
}
