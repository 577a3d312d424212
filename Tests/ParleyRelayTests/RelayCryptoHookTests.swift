import XCTest
import Glibc
import ParleyCore
import ParleyIO
@testable import ParleyRelay

/// The hop-by-hop SRTP slot, exercised with a toy transform (a 4-byte tag per
/// participant) so the routing of protect/unprotect is visible: inbound
/// packets are unprotected with the sender's hook, each copy is protected
/// with its receiver's hook. ParleySRTP contexts plug in the same way.
final class RelayCryptoHookTests: XCTestCase {
    /// "Protects" by appending `tag`; "unprotects" by checking and stripping it.
    private func toy(_ tag: [UInt8]) -> ParticipantCrypto {
        ParticipantCrypto(unprotect: { packet, _ in
            let n = packet.count
            guard n >= 4, Array(packet[(n - 4)..<n]) == tag else { return nil }
            return n - 4
        }, protect: { buffer, length, _ in
            guard length + 4 <= buffer.count else { return nil }
            for i in 0..<4 { buffer[length + i] = tag[i] }
            return length + 4
        })
    }

    func testInboundUnprotectedWithSenderHookAndOutboundProtectedPerReceiver() throws {
        let f = try RelayFixture()
        let tagA: [UInt8] = Array("AAAA".utf8), tagB: [UInt8] = Array("BBBB".utf8)
        let (a, ca) = try f.join("r", [.video()], crypto: toy(tagA))
        let (_, cb) = try f.join("r", [], crypto: toy(tagB), receiving: [a])
        let (_, cc) = try f.join("r", [], receiving: [a])
        let ssrc = a.tracks[0].ssrc
        let plain = rtpPacket(ssrc: ssrc, seq: 1, payload: payload(ssrc: ssrc, seq: 1))
        ca.send(plain + tagA, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), plain + tagB, "B gets it protected with B's hook")
        XCTAssertEqual(cc.receive(where: isRTP), plain, "C has no hook: plaintext")

        // A packet that fails A's check is dropped, counted, and goes nowhere.
        ca.send(plain + Array("XXXX".utf8), to: f.mediaAddress)
        let next = rtpPacket(ssrc: ssrc, seq: 2, payload: payload(ssrc: ssrc, seq: 2))
        ca.send(next + tagA, to: f.mediaAddress)
        XCTAssertEqual(cc.receive(where: isRTP), next)
        XCTAssertEqual(cb.receive(where: isRTP), next + tagB, "the bad packet never reached B")
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "auth_failed")]), 1)

        // NACK answers come from the plaintext ring and are protected for the requester.
        cb.send(encoded(RTCPGenericNACKBuilder.nack(media: ssrc, lost: 1)) + tagB, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), plain + tagB)
    }
}

import ParleyRTP
enum RTCPGenericNACKBuilder {
    static func nack(media: UInt32, lost: UInt16) -> RTCPGenericNACK { RTCPGenericNACK(senderSSRC: 0xB, mediaSSRC: media, lost: [lost]) }
}
