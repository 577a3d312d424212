import XCTest
import Glibc
import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySTUN
@testable import ParleyRelay
import ParleyTestSupport

/// The relay on real loopback sockets: clients latch with STUN short-term
/// credentials, then send RTP that the relay fans out.
final class RelayForwardingTests: XCTestCase {
    /// Residence measurement: off by default (nothing recorded); once on,
    /// every forwarded datagram gets one residence time, and taking the
    /// window starts a new one.
    func testResidenceIsMeasuredPerDatagramOnceTurnedOn() throws {
        let f = try RelayFixture()
        let (g, alice) = try f.join("call", [.opus()])
        let (_, bob) = try f.join("call", [], receiving: [g])
        let ssrc = g.tracks[0].ssrc
        func sendAndReceive(_ seqs: ClosedRange<UInt16>) {
            for seq in seqs { alice.send(rtpPacket(ssrc: ssrc, seq: seq, pt: 111, payload: [UInt8](repeating: 7, count: 160)), to: f.mediaAddress) }
            for _ in seqs { XCTAssertNotNil(bob.receive(where: isRTP)) }
        }
        let w = f.relay.workers[0]
        sendAndReceive(1...5)
        XCTAssertEqual(try w.loop.submit { w.takeResidence().count }, 0, "not measured unless asked")

        try w.loop.submit { try w.setResidenceMeasurement(true) }
        sendAndReceive(6...15)
        let h = try w.loop.submit { w.takeResidence() }
        XCTAssertEqual(h.count, 10)
        let p50 = try XCTUnwrap(h.percentile(0.5)), p99 = try XCTUnwrap(h.percentile(0.99))
        XCTAssertGreaterThan(p50, 0)
        XCTAssertLessThanOrEqual(p50, p99)
        XCTAssertLessThanOrEqual(p99, h.max)
        XCTAssertEqual(try w.loop.submit { w.takeResidence().count }, 0, "taking the window starts a new one")

        try w.loop.submit { try w.setResidenceMeasurement(false) }
        sendAndReceive(16...18)
        XCTAssertEqual(try w.loop.submit { w.takeResidence().count }, 0)
    }

    func testThreeParticipantsReceiveEachOthersStreamsByteExact() throws {
        let f = try RelayFixture()
        var members: [(ParticipantGrant, TestClient)] = []
        for _ in 0..<3 {
            let others = members.map(\.0)
            members.append(try f.join("call", [.opus(), .video()], receiving: others, receivedBy: others))
        }
        let stats = try f.stats("call")
        XCTAssertEqual(stats.participants.count, 3)
        XCTAssertEqual(Set(stats.participants.compactMap(\.address)), Set(members.map { $0.1.address.description }))
        for p in stats.participants { XCTAssertEqual(p.subscribedSSRCs.count, 4, "each receives the other two's audio + video") }

        // Each sends 20 packets per track.
        var sent: [UInt32: [[UInt8]]] = [:]
        for (g, c) in members {
            for t in g.tracks {
                for seq in UInt16(1)...20 {
                    let pkt = rtpPacket(ssrc: t.ssrc, seq: seq, pt: t.spec.payloadType,
                                        payload: payload(ssrc: t.ssrc, seq: seq, size: t.spec.kind == .video ? 1100 : 160))
                    sent[t.ssrc, default: []].append(pkt)
                    c.send(pkt, to: f.mediaAddress)
                }
            }
        }
        for (i, (_, c)) in members.enumerated() {
            let expected = members.enumerated().filter { $0.offset != i }.flatMap { $0.element.0.tracks.map(\.ssrc) }
            var got: [UInt32: [[UInt8]]] = [:]
            let total = expected.count * 20
            var n = 0
            while n < total, let d = c.receive(where: isRTP) {
                got[ssrcOf(d), default: []].append(d)
                n += 1
            }
            XCTAssertEqual(n, total, "participant \(i) got every packet")
            for s in expected { XCTAssertEqual(got[s], sent[s], "participant \(i): stream \(s) byte-exact and in order") }
            XCTAssertTrue(Set(got.keys).isSubset(of: Set(expected)), "never its own stream")
        }
        XCTAssertEqual(f.counter("parley_relay_packets_out_total") >= 3 * 2 * 20 * 2, true)
    }

    func testUnsubscribeAndMuteStopDelivery() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.video()])
        let (b, cb) = try f.join("r", [.opus()], receiving: [a], receivedBy: [a])
        let (c, cc) = try f.join("r", [.opus()], receiving: [a, b], receivedBy: [a, b])
        let aTrack = a.tracks[0].ssrc, bTrack = b.tracks[0].ssrc, cTrack = c.tracks[0].ssrc

        // C unsubscribes from A's video: B still gets it, C does not.
        try waitFor { f.relay.setSubscribed(room: "r", subscriber: c.name, ssrc: aTrack, false, completion: $0) }
        let x = rtpPacket(ssrc: aTrack, seq: 1, payload: payload(ssrc: aTrack, seq: 1))
        ca.send(x, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), x)
        // Marker: B's audio reaches C after A's packet would have (one socket, one order).
        let m1 = rtpPacket(ssrc: bTrack, seq: 1, pt: 111, payload: payload(ssrc: bTrack, seq: 1))
        cb.send(m1, to: f.mediaAddress)
        XCTAssertEqual(cc.receive(where: isRTP), m1, "C got the marker and nothing from A before it")

        // Resubscribe brings it back.
        try waitFor { f.relay.setSubscribed(room: "r", subscriber: c.name, ssrc: aTrack, true, completion: $0) }
        let x2 = rtpPacket(ssrc: aTrack, seq: 2, payload: payload(ssrc: aTrack, seq: 2))
        ca.send(x2, to: f.mediaAddress)
        XCTAssertEqual(cc.receive(where: isRTP), x2)
        XCTAssertEqual(cb.receive(where: isRTP), x2)

        // A mutes its video: nobody gets it, and it is counted.
        try waitFor { f.relay.setMuted(room: "r", ssrc: aTrack, true, completion: $0) }
        let y = rtpPacket(ssrc: aTrack, seq: 3, payload: payload(ssrc: aTrack, seq: 3))
        ca.send(y, to: f.mediaAddress)
        let m2 = rtpPacket(ssrc: cTrack, seq: 1, pt: 111, payload: payload(ssrc: cTrack, seq: 1))
        cc.send(m2, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), m2, "B got C's marker, not A's muted packet")
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "muted")]), 1)
        try waitFor { f.relay.setMuted(room: "r", ssrc: aTrack, false, completion: $0) }
        let z = rtpPacket(ssrc: aTrack, seq: 4, payload: payload(ssrc: aTrack, seq: 4))
        ca.send(z, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), z)
    }

    func testPacketFromUnknownAddressIsDropped() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.opus()])
        let (b, cb) = try f.join("r", [.opus()], receiving: [a], receivedBy: [a])
        let stranger = TestClient()
        // Uses A's SSRC, but from an address nobody latched.
        let forged = rtpPacket(ssrc: a.tracks[0].ssrc, seq: 9, pt: 111, payload: payload(ssrc: 1, seq: 9))
        stranger.send(forged, to: f.mediaAddress)
        // A packet with an SSRC A was not granted is dropped too.
        ca.send(rtpPacket(ssrc: 0xDEAD, seq: 1, pt: 111, payload: [1, 2, 3]), to: f.mediaAddress)
        // Garbage from a latched address: dropped, counted, no crash.
        ca.send([0x80], to: f.mediaAddress)
        ca.send([0x80, 0x60, 0, 1, 0, 0], to: f.mediaAddress)
        ca.send([0xFF, 1, 2, 3], to: f.mediaAddress)
        let marker = rtpPacket(ssrc: a.tracks[0].ssrc, seq: 10, pt: 111, payload: payload(ssrc: 2, seq: 10))
        ca.send(marker, to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), marker, "B got the marker first: the forged packet was not forwarded")
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "unknown_source")]), 1)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "unknown_ssrc")]), 1)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "malformed")]), 2)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "unknown_protocol")]), 1)
        // The stranger did not get a session either.
        let s = try f.stats("r")
        XCTAssertFalse(s.participants.contains { $0.address == stranger.address.description })
        _ = b
    }
}

/// What a join grants, what publish and unpublish do, and that nobody
/// receives anything without subscribing.
final class RelayPublishTests: XCTestCase {
    func testNothingIsForwardedBeforePublishOrSubscribeAndUnpublishEndsTheTrack() throws {
        let f = try RelayFixture()
        let g = try waitFor { f.relay.join(room: "r", name: "alice", tracks: [.video()], completion: $0) }
        let ssrc = g.tracks[0].ssrc
        XCTAssertEqual(g.name, "alice")
        let ca = f.latch(g)
        let (b, cb) = try f.join("r", [])
        XCTAssertEqual(try f.stats("r").participants.flatMap(\.published), [], "a grant is no track yet")
        func send(_ seq: UInt16) -> [UInt8] {
            let p = rtpPacket(ssrc: ssrc, seq: seq, payload: payload(ssrc: ssrc, seq: seq))
            ca.send(p, to: f.mediaAddress)
            return p
        }
        func marker(_ seq: UInt16) {
            // From B on an SSRC never granted: once it is counted, all A sent before it was processed.
            let before = f.counter("parley_relay_dropped_total", [("reason", "unknown_ssrc")])
            cb.send(rtpPacket(ssrc: 0xB0B, seq: seq, payload: [1]), to: f.mediaAddress)
            waitUntil("B's packet processed") { f.counter("parley_relay_dropped_total", [("reason", "unknown_ssrc")]) > before }
        }

        // Granted but not published: dropped and counted as unpublished.
        _ = send(1)
        marker(1)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "unpublished")]), 1)

        // Published, but B has not subscribed: forwarded to nobody.
        let info = try waitFor { f.relay.publish(room: "r", name: "alice", track: .video(ssrc: ssrc), completion: $0) }
        XCTAssertEqual(info, RoomTrack(participant: "alice", spec: .video(ssrc: ssrc), ssrc: ssrc, muted: false))
        _ = send(2)
        marker(2)
        XCTAssertTrue(cb.drain().filter(isRTP).isEmpty, "not subscribed: nothing")
        XCTAssertEqual(try f.stats("r").participants.first { $0.name == b.name }?.subscribedSSRCs, [])

        // Subscribed: it flows, and B's NACK is answered from the ring.
        try f.subscribe(b, to: g)
        let p3 = send(3)
        XCTAssertEqual(cb.receive(where: isRTP), p3)
        cb.send(encoded(RTCPGenericNACK(senderSSRC: 0xB, mediaSSRC: ssrc, lost: [3])), to: f.mediaAddress)
        XCTAssertEqual(cb.receive(where: isRTP), p3)

        // Unpublished: the subscription and the ring go with the track; RTP on the SSRC is dropped again.
        try waitFor { f.relay.unpublish(room: "r", name: "alice", ssrc: ssrc, completion: $0) }
        XCTAssertEqual(try f.stats("r").participants.first { $0.name == b.name }?.subscribedSSRCs, [])
        XCTAssertEqual(try f.stats("r").participants.first { $0.name == "alice" }?.published, [])
        _ = send(4)
        marker(4)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "unpublished")]), 2)
        XCTAssertThrowsError(try waitFor { f.relay.setSubscribed(room: "r", subscriber: b.name, ssrc: ssrc, true, completion: $0) }) {
            XCTAssertEqual($0 as? RelayError, .noSuchTrack(ssrc))
        }
        XCTAssertThrowsError(try waitFor { f.relay.unpublish(room: "r", name: "alice", ssrc: ssrc, completion: $0) }) {
            XCTAssertEqual($0 as? RelayError, .noSuchTrack(ssrc))
        }

        // The SSRC stays granted: published again, it is a fresh track with an empty ring.
        _ = try waitFor { f.relay.publish(room: "r", name: "alice", track: .video(ssrc: ssrc), completion: $0) }
        try f.subscribe(b, to: g)
        let missedBefore = f.counter("parley_relay_nack_packets_total", [("result", "missed")])
        cb.send(encoded(RTCPGenericNACK(senderSSRC: 0xB, mediaSSRC: ssrc, lost: [3])), to: f.mediaAddress)
        waitUntil("NACK for the old track's packet missed") {
            f.counter("parley_relay_nack_packets_total", [("result", "missed")]) == missedBefore + 1
        }
        let p5 = send(5)
        XCTAssertEqual(cb.receive(where: isRTP), p5)
    }
}

/// The recorder tap sees exactly what is forwarded, as plaintext.
final class RelayTapTests: XCTestCase {
    func testTapReceivesForwardedPacketsButNotMutedOnes() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.opus(), .video()])
        let (_, cb) = try f.join("r", [], receiving: [a])
        let seen = TapLog()
        let before = realtimeNanoseconds()
        try waitFor { f.relay.setTap(room: "r", RTPTap { ssrc, kind, bytes, arrival in seen.add(ssrc, kind, Array(bytes), arrival) },
                                     completion: $0) }
        let audio = a.tracks[0].ssrc, video = a.tracks[1].ssrc
        try waitFor { f.relay.setMuted(room: "r", ssrc: video, true, completion: $0) }
        let p1 = rtpPacket(ssrc: audio, seq: 1, pt: 111, payload: payload(ssrc: audio, seq: 1))
        let p2 = rtpPacket(ssrc: video, seq: 1, payload: payload(ssrc: video, seq: 1))
        let p3 = rtpPacket(ssrc: audio, seq: 2, pt: 111, payload: payload(ssrc: audio, seq: 2))
        for p in [p1, p2, p3] { ca.send(p, to: f.mediaAddress) }
        XCTAssertEqual(cb.receive(where: isRTP), p1)
        XCTAssertEqual(cb.receive(where: isRTP), p3)
        let log = seen.all
        XCTAssertEqual(log.map(\.0), [audio, audio])
        XCTAssertEqual(log.map(\.1), [.audio, .audio])
        XCTAssertEqual(log.map(\.2), [p1, p3])
        // Each packet's arrival is its batch's wall-clock time: between the test's start and now (±1 s for the offset's refresh).
        let after = realtimeNanoseconds()
        XCTAssertEqual(seen.arrivals.count, 2)
        for a in seen.arrivals { XCTAssertTrue((before - 1_000_000_000)...(after + 1_000_000_000) ~= a, "arrival \(a) not in [\(before), \(after)]") }
        try waitFor { f.relay.setTap(room: "r", nil, completion: $0) }
    }
}

final class TapLog: @unchecked Sendable {
    private let lock = NSLockLike()
    private var items: [(UInt32, MediaKind, [UInt8])] = []
    private var times: [Int64] = []
    func add(_ s: UInt32, _ k: MediaKind, _ b: [UInt8], _ arrival: Int64 = 0) { lock.sync { items.append((s, k, b)); times.append(arrival) } }
    var all: [(UInt32, MediaKind, [UInt8])] { lock.sync { items } }
    var arrivals: [Int64] { lock.sync { times } }
}
