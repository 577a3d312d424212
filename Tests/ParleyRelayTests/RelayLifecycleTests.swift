import XCTest
import Glibc
import ParleyCore
import ParleyIO
@testable import ParleyRelay

/// Timeouts, limits, control-plane errors and metrics.
final class RelayLifecycleTests: XCTestCase {
    func testSilentParticipantIsRemovedAfterTheTimeout() throws {
        let f = try RelayFixture {
            $0.participantTimeout = .seconds(2) // long enough that A's keepalives never miss it on a loaded machine
            $0.housekeepingInterval = .milliseconds(100)
        }
        XCTAssertEqual(RelayConfig().participantTimeout, .seconds(30))
        _ = try f.relay.createRoomSync("r")
        let (a, ca) = try f.join("r", [.opus()])
        let (b, cb) = try f.join("r", [.opus()])
        _ = cb
        // A sends only STUN Binding indications (keepalives): they count as
        // activity from a latched address. B goes silent and is removed.
        let indication: [UInt8] = [0x00, 0x11, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 7, count: 12)
        waitUntil("B removed") {
            ca.send(indication, to: f.mediaAddress)
            usleep(50_000)
            return (try? f.relay.statsSync(room: "r").participants.map(\.id)) == [a.id]
        }
        XCTAssertTrue(f.events.all.contains(.participantTimedOut(room: "r", participant: b.id)))
        XCTAssertGreaterThanOrEqual(f.counter("parley_relay_participant_timeouts_total"), 1)
        XCTAssertThrowsError(try f.relay.removeParticipantSync(room: "r", b.id)) {
            XCTAssertEqual($0 as? RelayError, .noSuchParticipant(b.id))
        }
    }

    func testLimitsAndControlErrors() throws {
        let f = try RelayFixture {
            $0.maxRoomsPerLoop = 2
            $0.maxParticipantsPerRoom = 2
        }
        _ = try f.relay.createRoomSync("a")
        XCTAssertThrowsError(try f.relay.createRoomSync("a")) { XCTAssertEqual($0 as? RelayError, .roomExists("a")) }
        _ = try f.relay.createRoomSync("b")
        XCTAssertThrowsError(try f.relay.createRoomSync("c")) { XCTAssertEqual($0 as? RelayError, .tooManyRooms(limit: 2)) }
        XCTAssertThrowsError(try f.relay.addParticipantSync(room: "zzz", tracks: [])) { XCTAssertEqual($0 as? RelayError, .noSuchRoom("zzz")) }

        let p1 = try f.relay.addParticipantSync(room: "a", tracks: [.opus(ssrc: 1234)])
        XCTAssertEqual(p1.tracks.map(\.ssrc), [1234])
        XCTAssertThrowsError(try f.relay.addParticipantSync(room: "a", tracks: [.opus(ssrc: 1234)])) {
            XCTAssertEqual($0 as? RelayError, .ssrcInUse(1234))
        }
        XCTAssertThrowsError(try f.relay.addParticipantSync(room: "a", tracks: [TrackSpec(kind: .audio, payloadType: 72, clockRate: 8000)]))
        _ = try f.relay.addParticipantSync(room: "a", tracks: [.video()])
        XCTAssertThrowsError(try f.relay.addParticipantSync(room: "a", tracks: [])) {
            XCTAssertEqual($0 as? RelayError, .roomFull(room: "a", limit: 2))
        }
        XCTAssertThrowsError(try f.relay.setMutedSync(room: "a", ssrc: 999, true)) { XCTAssertEqual($0 as? RelayError, .noSuchTrack(999)) }
        XCTAssertThrowsError(try f.relay.setSubscribedSync(room: "a", subscriber: p1.id, ssrc: 1234, true))

        // Closing a room frees its slot and its participants.
        try f.relay.closeRoomSync("a")
        _ = try f.relay.createRoomSync("c")
        XCTAssertEqual(f.relay.roomNames, ["b", "c"])
        XCTAssertEqual(f.metrics.gauge("parley_relay_participants", help: "").current, 0)
    }

    func testRoomsSpreadOverLoopsAndMetricsRender() throws {
        let group = try EventLoopGroup(numberOfThreads: 2)
        defer { group.syncShutdownGracefully() }
        var c = RelayConfig()
        let metrics = MetricsRegistry()
        c.metrics = metrics
        let relay = try Relay(loops: group.loops, mediaAddresses: [.ipv4Loopback(port: 0), .ipv4Loopback(port: 0)], config: c)
        defer { relay.shutdown() }
        let r1 = try relay.createRoomSync("one")
        let r2 = try relay.createRoomSync("two")
        XCTAssertNotEqual(r1.loopIndex, r2.loopIndex)
        XCTAssertNotEqual(r1.endpoint, r2.endpoint)
        let g = try relay.addParticipantSync(room: "two", tracks: [.opus()])
        XCTAssertEqual(g.endpoint, r2.endpoint)
        let text = metrics.render()
        XCTAssertTrue(text.contains("parley_relay_rooms 2"))
        XCTAssertTrue(text.contains("parley_relay_room_participants{room=\"two\"} 1"))
        XCTAssertTrue(text.contains("parley_relay_dropped_total{reason=\"unknown_source\"} 0"))
    }

    /// Control calls made after the loops stopped (a signalling grace timer
    /// firing during shutdown) get an error; they neither hang nor trap,
    /// even on a thread that reuses a dead loop thread's pthread_t.
    func testCallsAfterTheLoopsStoppedFailWithClosed() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        let relay = try Relay(loops: group.loops, mediaAddresses: [.ipv4Loopback(port: 0)], config: RelayConfig())
        _ = try relay.createRoomSync("r")
        let g = try relay.addParticipantSync(room: "r", tracks: [.opus()])
        group.syncShutdownGracefully()
        XCTAssertFalse(group.loops[0].inEventLoop)
        for _ in 0..<20 { // new threads: some get the joined loop thread's pthread_t back
            let done = DispatchSemaphore(value: 0)
            Thread {
                XCTAssertFalse(group.loops[0].inEventLoop)
                do {
                    try relay.removeParticipantSync(room: "r", g.id)
                    XCTFail("a stopped relay accepted a call")
                } catch {
                    XCTAssertEqual(error as? RelayError, .closed)
                }
                done.signal()
            }.start()
            done.wait()
        }
        XCTAssertThrowsError(try relay.createRoomSync("s")) { XCTAssertEqual($0 as? RelayError, .closed) }
    }
}
