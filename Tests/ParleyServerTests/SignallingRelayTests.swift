import ParleyRTP
import XCTest
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyRelay
import ParleySRTP
import ParleyTestSupport
@testable import ParleyServer
@testable import ParleyProtocol

/// The whole call path in one process on loopback: signalling over
/// WebSocket joins two clients into the real relay, they exchange SRTP
/// through it (decrypted with the publisher's key, re-encrypted with each
/// subscriber's), forged and replayed packets are dropped and counted, and a
/// reconnect inside the grace period keeps the media session.
final class SignallingRelayTests: XCTestCase {
    var fx: RelayServerFixture!
    var group: EventLoopGroup { fx.group }

    override func setUpWithError() throws { fx = try RelayServerFixture() }
    override func tearDown() { fx.stop() }

    func token(_ sub: String, room: String = "call") -> String { fx.token(sub, room: room) }
    func connect() throws -> BlockingSignallingClient { try fx.connect() }
    func counter(_ reason: String) -> Int { fx.srtpDrops(reason) }

    /// Joins `name`, publishes its audio track, and returns the client, join reply and track.
    func joinAndPublish(_ name: String) throws -> (BlockingSignallingClient, JSONValue, JSONValue) {
        let c = try connect()
        try c.call(.auth(token: token(name), room: nil))
        let join = try c.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        let pub = try c.call(.publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)]))
        return (c, join, pub["tracks"]!.arrayValue![0])
    }

    func testTwoClientsExchangeSRTPForgedAndReplayedPacketsAreDropped() throws {
        let (a, joinA, trackA) = try joinAndPublish("alice")
        let (b, joinB, trackB) = try joinAndPublish("bob")
        _ = try a.nextEvent("track_published")
        try a.call(.subscribe(track: trackB["id"]!.stringValue!))
        try b.call(.subscribe(track: trackA["id"]!.stringValue!))
        let ssrcA = UInt32(trackA["ssrc"]!.intValue!), ssrcB = UInt32(trackB["ssrc"]!.intValue!)

        let peerA = try MediaPeer(join: joinA), peerB = try MediaPeer(join: joinB)
        // Alice latches with STUN (ICE credentials from the join); Bob by his first authenticated SRTP packet.
        XCTAssertTrue(peerA.bind(ufrag: joinA["ice"]!["ufrag"]!.stringValue!, password: joinA["ice"]!["pwd"]!.stringValue!))
        let fromBob = try peerB.sendNext(ssrc: ssrcB)
        XCTAssertEqual(try peerA.receiveRTP(), fromBob, "Alice decrypts Bob's packet with her receive key")

        // Bob's address is latched now; Alice's packets reach him, re-encrypted for him.
        var sentByAlice: [[UInt8]] = []
        for _ in 0..<5 { sentByAlice.append(try peerA.sendNext(ssrc: ssrcA)) }
        var gotByBob: [[UInt8]] = []
        for _ in 0..<5 { if let p = try peerB.receiveRTP() { gotByBob.append(p) } }
        XCTAssertEqual(gotByBob, sentByAlice)

        // A packet protected with a key nobody was given: dropped and counted, never forwarded.
        let forgedBefore = counter("auth_failed")
        let mallory = try SRTPContext(material: .random(), direction: .outbound)
        let forged = try mallory.protect(MediaPeer.plainRTP(ssrc: ssrcA, seq: 120))
        peerA.send(forged)
        // A replay of a packet the relay already accepted: dropped and counted.
        let replayBefore = counter("replay")
        peerA.seq &+= 1
        let original = try peerA.rtp(ssrc: ssrcA, seq: peerA.seq)
        peerA.send(original.srtp)
        XCTAssertEqual(try peerB.receiveRTP(), original.plain)
        peerA.send(original.srtp)
        // Then a good packet: it must be the next thing Bob receives.
        let marker = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerB.receiveRTP(), marker, "neither the forged nor the replayed packet was forwarded")
        XCTAssertEqual(counter("auth_failed"), forgedBefore + 1)
        XCTAssertEqual(counter("replay"), replayBefore + 1)

        // A forged packet from an address nobody latched (claiming Bob's SSRC) does not steal Bob's session.
        let intruder = try MediaPeer(join: joinB)
        intruder.send(try mallory.protect(MediaPeer.plainRTP(ssrc: ssrcB, seq: 130)))
        let fromBob2 = try peerB.sendNext(ssrc: ssrcB)
        XCTAssertEqual(try peerA.receiveRTP(), fromBob2)
        XCTAssertNil(intruder.receive(timeout: 0.2), "the intruder's address was not latched")
        a.close()
        b.close()
    }

    func testReconnectInsideGracePeriodKeepsMediaFlowing() throws {
        let (a, joinA, trackA) = try joinAndPublish("alice")
        let (b, joinB, _) = try joinAndPublish("bob")
        try b.call(.subscribe(track: trackA["id"]!.stringValue!))
        let ssrcA = UInt32(trackA["ssrc"]!.intValue!)
        let peerA = try MediaPeer(join: joinA), peerB = try MediaPeer(join: joinB)
        XCTAssertTrue(peerB.bind(ufrag: joinB["ice"]!["ufrag"]!.stringValue!, password: joinB["ice"]!["pwd"]!.stringValue!))
        var sent = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerB.receiveRTP(), sent)

        // Alice's signalling connection drops (no close frame); her media keeps flowing.
        a.close(abort: true)
        sent = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerB.receiveRTP(), sent)

        // She reconnects with the same token: same session, same keys, no new join.
        let a2 = try connect()
        let auth = try a2.call(.auth(token: token("alice"), room: nil))
        XCTAssertEqual(auth["resumed"], true)
        XCTAssertEqual(auth["join"]?["srtp"], joinA["srtp"])
        XCTAssertEqual(auth["join"]?["tracks"]?.arrayValue?.count, 1)
        sent = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerB.receiveRTP(), sent)
        XCTAssertEqual(try a2.call(.ping)["type"], "ping")
        XCTAssertThrowsError(try b.nextEvent("participant_left", timeout: 0.3), "nobody was told Alice left")
        a2.close()
        b.close()
    }

    func testOnlySubscribedTracksAreForwardedAndUnsubscribeStops() throws {
        let (a, joinA, trackA) = try joinAndPublish("alice")
        let (b, joinB, _) = try joinAndPublish("bob")
        let ssrcA = UInt32(trackA["ssrc"]!.intValue!)
        let peerA = try MediaPeer(join: joinA), peerB = try MediaPeer(join: joinB)
        XCTAssertTrue(peerB.bind(ufrag: joinB["ice"]!["ufrag"]!.stringValue!, password: joinB["ice"]!["pwd"]!.stringValue!))
        try peerA.sendNext(ssrc: ssrcA)
        XCTAssertNil(try peerB.receiveRTP(timeout: 0.3), "not subscribed: nothing arrives")
        try b.call(.subscribe(track: trackA["id"]!.stringValue!))
        let p1 = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerB.receiveRTP(), p1)
        try b.call(.unsubscribe(track: trackA["id"]!.stringValue!))
        try peerA.sendNext(ssrc: ssrcA)
        XCTAssertNil(try peerB.receiveRTP(timeout: 0.3), "unsubscribed: nothing arrives")
        a.close()
        b.close()
    }

    /// A WebRTC peer's new offer (client-initiated renegotiation) announces
    /// (`a=msid`) only the tracks it is subscribed to: none that was
    /// unpublished or whose publisher left, not even once the same SSRC is
    /// published again, until the peer subscribes again, and then on one
    /// section only.
    func testAReOfferAnnouncesNoTrackThatWentAway() throws {
        let w = try connect()
        try w.call(.auth(token: token("dana"), room: nil))
        // One audio section to send, two to receive.
        var sdp = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2"]
        for (mid, direction) in ["sendrecv", "recvonly", "recvonly"].enumerated() {
            sdp += ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:\(mid)", "a=\(direction)",
                    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
                    "a=fingerprint:sha-256 " + (0..<32).map { _ in "AB" }.joined(separator: ":"),
                    "a=setup:actpass", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2"]
            if mid == 0 { sdp.append("a=ssrc:5001 cname:dana") }
        }
        let offer = ClientRequest(type: "offer", fields: ["sdp": .string((sdp + [""]).joined(separator: "\r\n"))])
        func announced() throws -> [String] {
            let answer = try XCTUnwrap(try w.call(offer)["sdp"]?.stringValue)
            return answer.split(separator: "\r\n").filter { $0.hasPrefix("a=msid:") }.map { String($0.dropFirst(7).split(separator: " ")[0]) }.sorted()
        }
        XCTAssertEqual(try announced(), [], "the join announces nothing")
        let (b, _, trackB) = try joinAndPublish("bob")
        let (c, _, trackC) = try joinAndPublish("carol")
        let idB = trackB["id"]!.stringValue!, ssrcB = UInt32(trackB["ssrc"]!.intValue!)
        try w.call(.subscribe(track: idB))
        try w.call(.subscribe(track: trackC["id"]!.stringValue!))
        XCTAssertEqual(try announced(), ["bob", "carol"])

        try b.call(.unpublish(track: idB))
        XCTAssertEqual(try announced(), ["carol"], "an unpublished track")
        try b.call(.publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2, ssrc: ssrcB)]))
        XCTAssertEqual(try announced(), ["carol"], "published again on the same SSRC, but not subscribed to")
        try w.call(.subscribe(track: idB))
        XCTAssertEqual(try announced(), ["bob", "carol"], "subscribed again: one section")

        try c.call(.leave)
        XCTAssertEqual(try announced(), ["bob"], "a publisher who left")
        b.close(); c.close(); w.close()
    }

    func testSRTCPSenderReportsAreReprotectedForSubscribersAndForgedOnesDropped() throws {
        let (a, joinA, trackA) = try joinAndPublish("alice")
        let (b, joinB, _) = try joinAndPublish("bob")
        try b.call(.subscribe(track: trackA["id"]!.stringValue!))
        let ssrcA = UInt32(trackA["ssrc"]!.intValue!)
        let peerA = try MediaPeer(join: joinA), peerB = try MediaPeer(join: joinB)
        XCTAssertTrue(peerA.bind(ufrag: joinA["ice"]!["ufrag"]!.stringValue!, password: joinA["ice"]!["pwd"]!.stringValue!))
        XCTAssertTrue(peerB.bind(ufrag: joinB["ice"]!["ufrag"]!.stringValue!, password: joinB["ice"]!["pwd"]!.stringValue!))
        let first = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerB.receiveRTP(), first)

        // RTCP SR (RFC 3550 §6.4.1): V=2, PT=200, length 6, SSRC, NTP, RTP ts, counts.
        func senderReport(_ packets: UInt32) -> [UInt8] {
            var sr: [UInt8] = [0x80, 200, 0, 6]
            for v: UInt32 in [ssrcA, 0xE000_0000, 0x1234_5678, 960, packets, packets * 160] {
                sr += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
            }
            return sr
        }
        let forgedBefore = fx.srtpDrops("auth_failed")
        let mallory = try SRTPContext(material: .random(), direction: .outbound)
        peerA.send(try mallory.protect(senderReport(99), rtcp: true))
        peerA.send(try peerA.sender.protect(senderReport(1), rtcp: true))
        var got: [UInt8]?
        while let d = peerB.receive() {
            if d.count >= 8 && d[1] == 200 { got = try peerB.receiver.unprotect(d, rtcp: true); break }
        }
        let sr = try XCTUnwrap(got, "Bob receives Alice's SR, protected with his key")
        XCTAssertEqual(Array(sr[4..<8]), Array(senderReport(1)[4..<8]), "sender SSRC")
        XCTAssertEqual(Array(sr[20..<24]), [0, 0, 0, 1], "the genuine report (packet count 1), not the forged one")
        XCTAssertEqual(fx.srtpDrops("auth_failed"), forgedBefore + 1)
        a.close()
        b.close()
    }

    func testRelayMediaTimeoutEndsTheSignallingSession() throws {
        fx.stop()
        fx = try RelayServerFixture(participantTimeout: .seconds(1))
        let (a, _, _) = try joinAndPublish("alice")
        let (b, joinB, _) = try joinAndPublish("bob")
        // Bob keeps his media session alive with STUN; Alice sends nothing and times out.
        let peerB = try MediaPeer(join: joinB)
        let ufrag = joinB["ice"]!["ufrag"]!.stringValue!, pwd = joinB["ice"]!["pwd"]!.stringValue!
        var left: JSONValue?
        for _ in 0..<100 where left == nil {
            XCTAssertTrue(peerB.bind(ufrag: ufrag, password: pwd))
            left = try? b.nextEvent("participant_left", timeout: 0.3)
        }
        XCTAssertEqual(left?["participant"], "alice")
        XCTAssertEqual(left?["reason"], "media_timeout")
        XCTAssertEqual(try a.nextEvent("participant_left")["participant"], "alice", "Alice is told too")
        let rooms = fx.front.signalling!.onLoop { _, calls in calls.roomsJSON() }
        XCTAssertEqual(rooms["rooms"]?.arrayValue?.first?["participants"]?.arrayValue?.compactMap { $0["id"]?.stringValue }, ["bob"])
        // Alice's connection stays and may join again.
        XCTAssertNotNil(try a.call(.join(room: nil, publish: true, subscribe: true, suite: nil))["srtp"])
        a.close()
        b.close()
    }

    /// Issue #15: a join is one round trip between the signalling queue and
    /// the room's loop, however many participants and tracks the room has
    /// (it was 4 + 2 × the others' tracks). Counted by the relay: every
    /// control operation it posts to a loop.
    func testAJoinIsOneHopToTheRoomsLoop() throws {
        var others: [BlockingSignallingClient] = []
        var published: [UInt32] = []
        for name in ["alice", "bob", "carol"] {
            let c = try connect()
            try c.call(.auth(token: token(name), room: nil))
            try c.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
            let pub = try c.call(.publish([
                TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2),
                TrackDescription(kind: .video, codec: "VP8", payloadType: 96, clockRate: 90000),
            ]))
            published += pub["tracks"]!.arrayValue!.map { UInt32($0["ssrc"]!.intValue!) }
            others.append(c)
        }
        let d = try connect()
        try d.call(.auth(token: token("dave"), room: nil))
        let before = fx.relay.controlOperations
        let join = try d.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        XCTAssertEqual(fx.relay.controlOperations - before, 1, "one operation posted to the room's loop")
        XCTAssertEqual(join["participants"]?.arrayValue?.count, 3)
        XCTAssertEqual(join["participants"]?.arrayValue?.flatMap { $0["tracks"]?.arrayValue ?? [] }.count, 6)

        // That one operation did the whole join: Dave is in the relay with his SRTP
        // hooks and SSRCs granted, subscribed to nothing, publishing nothing yet.
        let stats = try waitFor { fx.relay.stats(room: "call", completion: $0) }
        let dave = try XCTUnwrap(stats.participants.first { $0.name == "dave" })
        XCTAssertEqual(dave.subscribedSSRCs, [])
        XCTAssertEqual(dave.published, [])
        XCTAssertEqual(Set(stats.participants.flatMap(\.published).map(\.ssrc)), Set(published))
        let peer = try MediaPeer(join: join)
        XCTAssertTrue(peer.bind(ufrag: join["ice"]!["ufrag"]!.stringValue!, password: join["ice"]!["pwd"]!.stringValue!))
        for c in others + [d] { c.close() }
    }
}
