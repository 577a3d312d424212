import ParleyRTP
import XCTest
import ParleyTestSupport
import Glibc
import ParleyCore
import ParleyIO
@testable import ParleyRelay
import ParleyTestSupport

/// Timeouts, limits, control-plane errors and metrics.
final class RelayLifecycleTests: XCTestCase {
    func testSilentParticipantIsRemovedAfterTheTimeout() throws {
        let f = try RelayFixture {
            $0.participantTimeout = .seconds(2) // long enough that A's keepalives never miss it on a loaded machine
            $0.housekeepingInterval = .milliseconds(100)
        }
        XCTAssertEqual(RelayConfig().participantTimeout, .seconds(30))
        let (a, ca) = try f.join("r", [.opus()])
        let (b, cb) = try f.join("r", [.opus()])
        _ = cb
        // A sends only STUN Binding indications (keepalives): they count as
        // activity from a latched address. B goes silent and is removed.
        let indication: [UInt8] = [0x00, 0x11, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 7, count: 12)
        waitUntil("B removed") {
            ca.send(indication, to: f.mediaAddress)
            usleep(50_000)
            return (try? f.stats("r").participants.map(\.name)) == [a.name]
        }
        XCTAssertTrue(f.events.all.contains(.participantTimedOut(room: "r", name: b.name)))
        XCTAssertGreaterThanOrEqual(f.counter("parley_relay_participant_timeouts_total"), 1)
        XCTAssertThrowsError(try waitFor { f.relay.leave(room: "r", name: b.name, completion: $0) }) {
            XCTAssertEqual($0 as? RelayError, .noSuchParticipant(b.name))
        }
        // The room closes with its last participant.
        waitUntil("A removed and the room closed") { f.relay.roomNames.isEmpty }
        XCTAssertTrue(f.events.all.contains(.participantTimedOut(room: "r", name: a.name)))
        XCTAssertThrowsError(try f.stats("r")) { XCTAssertEqual($0 as? RelayError, .noSuchRoom("r")) }
    }

    func testLimitsAndControlErrors() throws {
        let f = try RelayFixture {
            $0.maxRoomsPerLoop = 2
            $0.maxParticipantsPerRoom = 2
        }
        // A join opens its room; a third room does not fit on the loop.
        let p1 = try f.add("a", [.opus(ssrc: 1234)])
        XCTAssertEqual(p1.tracks.map(\.ssrc), [1234])
        _ = try f.add("b", [])
        XCTAssertThrowsError(try f.add("c", [])) { XCTAssertEqual($0 as? RelayError, .tooManyRooms(limit: 2)) }
        XCTAssertEqual(f.relay.roomNames, ["a", "b"], "the failed join left no room behind")
        XCTAssertThrowsError(try f.stats("zzz")) { XCTAssertEqual($0 as? RelayError, .noSuchRoom("zzz")) }
        XCTAssertThrowsError(try f.add("", [])) { XCTAssertEqual($0 as? RelayError, .invalidRequest("room names are 1-128 bytes")) }

        XCTAssertThrowsError(try f.add("a", [.opus(ssrc: 1234)])) { XCTAssertEqual($0 as? RelayError, .ssrcInUse(1234)) }
        XCTAssertThrowsError(try f.add("a", [TrackDescription(kind: .audio, codec: "PCMU", payloadType: 72, clockRate: 8000)]))
        let p2 = try f.add("a", [.video()])
        XCTAssertThrowsError(try f.add("a", [])) { XCTAssertEqual($0 as? RelayError, .roomFull(room: "a", limit: 2)) }
        XCTAssertThrowsError(try waitFor { f.relay.setMuted(room: "a", ssrc: 999, true, completion: $0) }) {
            XCTAssertEqual($0 as? RelayError, .noSuchTrack(999))
        }
        XCTAssertThrowsError(try waitFor { f.relay.setSubscribed(room: "a", subscriber: p1.name, ssrc: 1234, true, completion: $0) },
                             "not to its own track")
        XCTAssertThrowsError(try waitFor { f.relay.publish(room: "a", name: p2.name, track: .opus(ssrc: 1234), completion: $0) }) {
            XCTAssertEqual($0 as? RelayError, .ssrcNotGranted(1234))
        }
        XCTAssertThrowsError(try waitFor { f.relay.publish(room: "a", name: p1.name, track: .opus(ssrc: 1234), completion: $0) }) {
            XCTAssertEqual($0 as? RelayError, .invalidRequest("SSRC 1234 is already published"))
        }
        // Rejoining under a name already in the room replaces that participant.
        let again = try f.add("a", [.opus()], name: p1.name)
        XCTAssertEqual(try f.stats("a").participants.map(\.name).sorted(), [p1.name, p2.name].sorted())
        XCTAssertNotEqual(again.ufrag, p1.ufrag)

        // Closing a room frees its slot and its participants.
        try waitFor { f.relay.closeRoom("a", completion: $0) }
        _ = try f.add("c", [])
        XCTAssertEqual(f.relay.roomNames, ["b", "c"])
        XCTAssertEqual(f.metrics.gauge("parley_relay_participants", help: "").current, 2)
        // Leaving closes a room with its last participant.
        for room in ["b", "c"] {
            let name = try f.stats(room).participants[0].name
            try waitFor { f.relay.leave(room: room, name: name, completion: $0) }
        }
        XCTAssertEqual(f.relay.roomNames, [])
        XCTAssertEqual(f.metrics.gauge("parley_relay_participants", help: "").current, 0)
        XCTAssertEqual(f.metrics.gauge("parley_relay_rooms", help: "").current, 0)
    }

    func testRoomsSpreadOverLoopsAndMetricsRender() throws {
        let group = try EventLoopGroup(numberOfThreads: 2)
        defer { group.syncShutdownGracefully() }
        var c = RelayConfig()
        let metrics = MetricsRegistry()
        c.metrics = metrics
        let relay = try Relay(loops: group.loops, mediaAddresses: [.ipv4Loopback(port: 0), .ipv4Loopback(port: 0)], config: c)
        defer { relay.shutdown() }
        let g1 = try waitFor { relay.join(room: "one", name: "a", tracks: [], completion: $0) }
        let g2 = try waitFor { relay.join(room: "two", name: "b", tracks: [.opus()], completion: $0) }
        XCTAssertNotEqual(g1.loopIndex, g2.loopIndex)
        XCTAssertNotEqual(g1.endpoint, g2.endpoint)
        let g3 = try waitFor { relay.join(room: "two", name: "c", tracks: [], completion: $0) }
        XCTAssertEqual(g3.endpoint, g2.endpoint)
        XCTAssertEqual(g3.loopIndex, g2.loopIndex)
        let text = metrics.render()
        XCTAssertTrue(text.contains("parley_relay_rooms 2"))
        XCTAssertTrue(text.contains("parley_relay_room_participants{room=\"two\"} 2"))
        XCTAssertTrue(text.contains("parley_relay_dropped_total{reason=\"unknown_source\"} 0"))
        XCTAssertTrue(text.contains("parley_relay_control_operations_total 3"))
        XCTAssertEqual(relay.controlOperations, 3, "one operation per join")
    }

    /// Control calls made after the loops stopped (a signalling grace timer
    /// firing during shutdown) get an error; they neither hang nor trap,
    /// even on a thread that reuses a dead loop thread's pthread_t.
    func testCallsAfterTheLoopsStoppedFailWithClosed() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        let relay = try Relay(loops: group.loops, mediaAddresses: [.ipv4Loopback(port: 0)], config: RelayConfig())
        let g = try waitFor { relay.join(room: "r", name: "a", tracks: [.opus()], completion: $0) }
        group.syncShutdownGracefully()
        XCTAssertFalse(group.loops[0].inEventLoop)
        for _ in 0..<20 { // new threads: some get the joined loop thread's pthread_t back
            let done = DispatchSemaphore(value: 0)
            Thread {
                XCTAssertFalse(group.loops[0].inEventLoop)
                do {
                    try waitFor { relay.leave(room: "r", name: g.name, completion: $0) }
                    XCTFail("a stopped relay accepted a call")
                } catch {
                    XCTAssertEqual(error as? RelayError, .closed)
                }
                done.signal()
            }.start()
            done.wait()
        }
        XCTAssertThrowsError(try waitFor { relay.join(room: "s", name: "b", tracks: [], completion: $0) }) {
            XCTAssertEqual($0 as? RelayError, .closed)
        }
    }
}
