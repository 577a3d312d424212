import XCTest
import Foundation
import Synchronization
import ParleyCore
import ParleyRTP
import ParleyRecord
import ParleySignalling
import ParleyTranscode
import ParleyTestSupport
@testable import ParleyServer
@testable import ParleyProtocol

/// Recording wired end to end in-process: the `rec` grant starts and stops
/// a recording over signalling, the participants hear of it, a late joiner
/// sees `"recording": true`, the relay's tap writes the publisher's RTP and
/// sender reports into the capture file, joins/mutes/leaves go to
/// events.log, and stopping exports. The admin API and `record-rooms` too,
/// and what a full disk, the free-space guard and a full recorder queue
/// cost: the recording, never the forwarding.
final class RecordingWiringTests: XCTestCase {
    var fx: RelayServerFixture!

    override func tearDown() { fx?.stop() }

    func testRecGrantStartsAndStopsARecordingThatCapturesTheRoom() throws {
        fx = try RelayServerFixture(recording: true)
        let alice = try fx.connect()
        try alice.call(.auth(token: fx.token("alice"), room: nil))
        let joinA = try alice.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        XCTAssertEqual(joinA["recording"]?.boolValue, false)
        let bob = try fx.connect()
        try bob.call(.auth(token: fx.token("bob", publish: false, record: true), room: nil))
        _ = try bob.call(.join(room: nil, publish: false, subscribe: true, suite: nil))

        // Without the grant: refused.
        XCTAssertThrowsError(try alice.call(.startRecording())) { e in
            guard case .refused(let err) = e as? SignallingClientError else { return XCTFail("\(e)") }
            XCTAssertEqual(err.1.code, .forbidden)
        }
        // Another room than the token's: refused.
        XCTAssertThrowsError(try bob.call(.startRecording(room: "elsewhere")))

        let started = try bob.call(.startRecording())
        let id = try XCTUnwrap(started["recording"]?.stringValue)
        XCTAssertEqual(started["room"]?.stringValue, "call")
        XCTAssertEqual(try alice.nextEvent("recording_started")["room"]?.stringValue, "call")
        XCTAssertEqual(try bob.nextEvent("recording_started")["room"]?.stringValue, "call")
        XCTAssertEqual(try bob.call(.startRecording())["recording"]?.stringValue, id, "starting again answers the running one")

        // Alice publishes and sends RTP and a sender report, as SRTP/SRTCP.
        let ssrc = UInt32(try XCTUnwrap(joinA["ssrcs"]?["audio"]?.intValue))
        let pub = try alice.call(.publish([.opus(ssrc: ssrc)]))
        let track = try XCTUnwrap(pub["tracks"]?.arrayValue?.first?["id"]?.stringValue)
        let peer = try MediaPeer(join: joinA)
        var sent: [[UInt8]] = []
        for _ in 0..<20 { sent.append(try peer.sendNext(ssrc: ssrc)) }
        let sr = try RTCPPacket.senderReport(RTCPSenderReport(ssrc: ssrc, ntpTimestamp: 0xE000_0000_8000_0000, rtpTimestamp: 123_456,
                                                              packetCount: 20, octetCount: 3200)).encoded()
        peer.send(try peer.sender.protect(sr, rtcp: true))
        for _ in 0..<5 { sent.append(try peer.sendNext(ssrc: ssrc)) }

        // A late joiner sees the flag.
        let carol = try fx.connect()
        try carol.call(.auth(token: fx.token("carol", publish: false), room: nil))
        XCTAssertEqual(try carol.call(.join(room: nil, publish: false, subscribe: true, suite: nil))["recording"]?.boolValue, true)
        try alice.call(.mute(track: track, muted: true))

        // The packets reach the capture file (the recorder drains its queue every 50 ms).
        let dir = fx.dataDir + "/recordings/" + id
        let file = dir + "/track-alice_\(ssrc).pcapng"
        waitUntil("the 25 packets and the sender report are written") {
            ((try? CaptureReader.read(path: file))?.packets.count ?? 0) >= 26
        }
        let stopped = try bob.call(.stopRecording())
        XCTAssertEqual(stopped["recording"]?.stringValue, id)
        XCTAssertEqual(try alice.nextEvent("recording_stopped")["room"]?.stringValue, "call")
        XCTAssertEqual(try carol.nextEvent("recording_stopped")["room"]?.stringValue, "call")
        XCTAssertThrowsError(try bob.call(.stopRecording()), "nothing left to stop")

        waitUntil("the recording is finished") { (try? RecordingIndex.read(directory: dir))?.stoppedAtMillis != nil }
        let index = try RecordingIndex.read(directory: dir)
        XCTAssertEqual(index.room, "call")
        XCTAssertEqual(index.stopReason, .requested)
        XCTAssertEqual(index.tracks.map(\.id), [track])
        XCTAssertEqual(index.tracks.first?.spec.codec.lowercased(), "opus")
        XCTAssertEqual(index.clockMappings[track], [ClockMapping(ntp: 0xE000_0000_8000_0000, rtp: 123_456)])
        let contents = try CaptureReader.read(path: file)
        XCTAssertEqual(contents.packets.filter { !$0.isRTCP }.map(\.bytes), sent, "every decrypted packet, in order")
        XCTAssertEqual(contents.packets.filter(\.isRTCP).count, 1)
        XCTAssertEqual(contents.tornBytes, 0)

        let events = RecordingEvent.read(directory: dir)
        let kinds = events.map { "\($0.kind.rawValue) \($0.participant ?? "")" }
        XCTAssertEqual(kinds.first, "started ")
        for k in ["join alice", "join bob", "join carol", "track_added alice", "mute alice", "stopped "] {
            XCTAssertTrue(kinds.contains(k), "\(k) in \(kinds)")
        }
        // Export runs on its own once the recording stops (the payloads are not real Opus: the files exist all the same).
        waitUntil("the export wrote alice.webm and mix.ogg") {
            FileManager.default.fileExists(atPath: dir + "/alice.webm") && FileManager.default.fileExists(atPath: dir + "/mix.ogg")
        }

        // The recordings over HTTP, for admin tokens, by id and file name only.
        let port = Int(fx.front.address.port)
        let admin = ["Authorization: Bearer \(fx.token("ops", room: nil, admin: true))"]
        let list = try httpRequest(port, "GET", "/recordings", headers: admin)
        XCTAssertTrue(list.hasPrefix("HTTP/1.1 200") && list.contains("\"id\":\"\(id)\"") && list.contains("\"running\":false"), list)
        let one = try httpRequest(port, "GET", "/recordings/\(id)", headers: admin)
        XCTAssertTrue(one.contains("\"name\":\"mix.ogg\"") && one.contains("\"name\":\"track-alice_\(ssrc).pcapng\""), one)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let ranged = try httpRequest(port, "GET", "/recordings/\(id)/track-alice_\(ssrc).pcapng", headers: admin + ["Range: bytes=0-9"])
        XCTAssertTrue(ranged.hasPrefix("HTTP/1.1 206"), ranged)
        XCTAssertTrue(ranged.contains("Content-Range: bytes 0-9/\(size)"), ranged)
        XCTAssertTrue(ranged.contains("Content-Type: application/x-pcapng"), ranged)
        XCTAssertTrue(try httpRequest(port, "GET", "/recordings/\(id)/events.log", headers: admin).hasPrefix("HTTP/1.1 200"))
        for bad in ["/recordings/\(id)/..%2F..%2Fsecret", "/recordings/\(id)/../../secret", "/recordings/..", "/recordings/\(id)/.hidden",
                    "/recordings/\(id)/index.json.tmp", "/recordings/nope", "/recordings/\(id)/missing.webm", "/recordings/\(id)/a/b"] {
            XCTAssertTrue(try httpRequest(port, "GET", bad, headers: admin).hasPrefix("HTTP/1.1 404"), bad)
        }
        XCTAssertTrue(try httpRequest(port, "GET", "/recordings").hasPrefix("HTTP/1.1 401"))
        XCTAssertTrue(try httpRequest(port, "GET", "/recordings/\(id)/mix.ogg",
                                      headers: ["Authorization: Bearer \(fx.token("bob", record: true))"]).hasPrefix("HTTP/1.1 403"),
                      "a rec token starts and stops recordings; reading them takes adm")
        for c in [alice, bob, carol] { c.close() }
    }

    /// A full disk stops the recording, never the call: the publisher's
    /// capture file is /dev/full (a real ENOSPC at the recorder's first
    /// write); the recording stops with `disk_full`, both participants hear
    /// `recording_stopped`, and the subscriber gets every packet the
    /// publisher sent, before and after.
    func testENOSPCStopsTheRecordingAndTheRelayKeepsForwarding() throws {
        fx = try RelayServerFixture(recording: true)
        let call = try RecordedCall(fx) { captureFile in XCTAssertEqual(symlink("/dev/full", captureFile), 0) }
        try call.exchange(10)
        XCTAssertEqual(try call.bob.nextEvent("recording_stopped")["room"]?.stringValue, "call")
        XCTAssertEqual(try call.alice.nextEvent("recording_stopped")["room"]?.stringValue, "call")
        waitUntil("the recording is finished") { (try? RecordingIndex.read(directory: call.dir))?.stoppedAtMillis != nil }
        XCTAssertEqual(try RecordingIndex.read(directory: call.dir).stopReason, .diskFull)
        XCTAssertEqual(RecordingEvent.read(directory: call.dir).last?.reason, "disk_full")
        try call.exchange(20)
        XCTAssertEqual(call.got, call.sent, "every packet forwarded, while recording and after the disk filled")
        call.close()
    }

    /// A recorder that cannot keep up costs the recording packets, never the
    /// call. The publisher's capture file is a FIFO with no reader, so the
    /// recorder thread blocks opening it when the track is added, before it
    /// drains a single packet of the track; the queue (`record-queue-packets`
    /// 16) fills, and every packet past it is dropped from the recording and
    /// counted in `parley_record_dropped_total`, while the subscriber gets
    /// every packet. Once the test reads the FIFO the recorder goes on: the
    /// recording holds the 16 queued packets and those sent after, none of
    /// the dropped ones.
    func testAFullRecorderQueueDropsPacketsFromTheRecordingCountsThemAndForwardingContinues() throws {
        fx = try RelayServerFixture(recording: true) { $0.recordQueuePackets = 16 }
        var fifo = "", reader: Int32 = -1
        // Whatever happens, the recorder must not stay blocked in open(2): the fixture's stop waits for it.
        defer { if reader < 0 && !fifo.isEmpty { reader = open(fifo, O_RDONLY | O_NONBLOCK) } }
        let call = try RecordedCall(fx) { captureFile in
            XCTAssertEqual(mkfifo(captureFile, 0o600), 0)
            fifo = captureFile
        }
        let dropped = MetricsRegistry.shared.counter("parley_record_dropped_total", help: "")
        let written = MetricsRegistry.shared.counter("parley_record_packets_total", help: "")
        let droppedBefore = dropped.current, writtenBefore = written.current
        // The relay hands a packet to the tap before it forwards it, so each one
        // received has been queued or dropped.
        try call.exchange(40)
        XCTAssertEqual(call.got, call.sent, "every packet forwarded while the recorder is stuck")
        XCTAssertEqual(dropped.current - droppedBefore, 40 - 16, "the packets past the queue's 16 slots are dropped and counted")

        reader = open(fifo, O_RDONLY | O_NONBLOCK)
        XCTAssertGreaterThanOrEqual(reader, 0)
        waitUntil("the 16 queued packets are written") { written.current - writtenBefore >= 16 }
        try call.exchange(10)
        XCTAssertEqual(call.got, call.sent)
        waitUntil("the 10 later packets are written") { written.current - writtenBefore >= 26 }
        XCTAssertEqual(dropped.current - droppedBefore, 24, "none dropped once the recorder drains")
        try call.bob.call(.stopRecording())
        waitUntil("the recording is finished") { (try? RecordingIndex.read(directory: call.dir))?.stoppedAtMillis != nil }
        var capture: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        waitUntil("the recorder closes the capture file") {
            while true {
                let n = read(reader, &buffer, buffer.count)
                if n > 0 { capture += buffer[0..<n] } else { return n == 0 }
            }
        }
        close(reader)
        let contents = try CaptureReader.parse(capture)
        XCTAssertEqual(contents.packets.map(\.bytes), Array(call.sent[0..<16] + call.sent[40...]),
                       "the recording lacks exactly the dropped packets")
        XCTAssertEqual(contents.tornBytes, 0)
        call.close()
    }

    /// The free-space guard stops a recording, never the call: with
    /// `record-min-free-bytes` above the disk's free space, the recorder's
    /// check at the recording's start stops it with `low_disk_space` (the
    /// index and events.log say so), both participants hear
    /// `recording_started` then `recording_stopped`, and the subscriber
    /// gets every packet.
    func testTheFreeSpaceGuardStopsTheRecordingAndTheRelayKeepsForwarding() throws {
        fx = try RelayServerFixture(recording: true) { $0.recordMinFreeBytes = 1 << 50 }
        var s = statvfs()
        XCTAssertEqual(statvfs(fx.dataDir, &s), 0)
        XCTAssertLessThan(Int64(s.f_bavail) * Int64(s.f_frsize), 1 << 50, "the disk has less free than the guard's minimum")
        let call = try RecordedCall(fx)
        for c in [call.alice, call.bob] {
            XCTAssertEqual(try c.nextEvent("recording_started")["room"]?.stringValue, "call")
            XCTAssertEqual(try c.nextEvent("recording_stopped")["room"]?.stringValue, "call")
        }
        waitUntil("the recording is finished") { (try? RecordingIndex.read(directory: call.dir))?.stoppedAtMillis != nil }
        XCTAssertEqual(try RecordingIndex.read(directory: call.dir).stopReason, .lowDiskSpace)
        XCTAssertEqual(RecordingEvent.read(directory: call.dir).last?.reason, "low_disk_space")
        XCTAssertThrowsError(try call.bob.call(.stopRecording()), "nothing left to stop")
        try call.exchange(20)
        XCTAssertEqual(call.got, call.sent, "every packet forwarded after the guard stopped the recording")
        call.close()
    }

    /// The free-space guard while a recording runs: DATA-DIR/recordings is
    /// a 64 MiB tmpfs and `record-min-free-bytes` 16 MiB. The recording
    /// writes packets; then a file takes 56 MiB of the tmpfs, and the
    /// recorder's next check (every 0.5 s) stops the recording with
    /// `low_disk_space` before the disk is full: the packets written before
    /// are in its capture file, both participants hear `recording_stopped`,
    /// and the subscriber gets every packet, before and after. (Mounting
    /// takes CAP_SYS_ADMIN: skipped without it.)
    func testTheFreeSpaceGuardStopsARunningRecordingBeforeTheDiskFills() throws {
        var mounted: String?
        fx = try RelayServerFixture(recording: true) { config in
            config.recordMinFreeBytes = 16 << 20
            let dir = config.dataDir + "/recordings"
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if mount("tmpfs", dir, "tmpfs", 0, "size=64m") == 0 { mounted = dir }
        }
        // After the fixture's stop (tearDown), lazily: a detached mount goes once nothing holds it open.
        defer { if let mounted { addTeardownBlock { _ = umount2(mounted, Int32(MNT_DETACH)) } } }
        guard let recordings = mounted else { throw XCTSkip("mounting a tmpfs needs CAP_SYS_ADMIN") }
        let call = try RecordedCall(fx)
        try call.exchange(20)
        let file = call.dir + "/track-alice_\(call.ssrc).pcapng"
        waitUntil("the 20 packets are written") { ((try? CaptureReader.read(path: file))?.packets.count ?? 0) >= 20 }
        XCTAssertNil(try RecordingIndex.read(directory: call.dir).stoppedAtMillis, "still recording with 64 MiB free")

        let filler = open(recordings + "/filler", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        XCTAssertGreaterThanOrEqual(filler, 0)
        XCTAssertEqual(posix_fallocate(filler, 0, 56 << 20), 0)
        close(filler)
        for c in [call.alice, call.bob] { XCTAssertEqual(try c.nextEvent("recording_stopped")["room"]?.stringValue, "call") }
        waitUntil("the recording is finished") { (try? RecordingIndex.read(directory: call.dir))?.stoppedAtMillis != nil }
        XCTAssertEqual(try RecordingIndex.read(directory: call.dir).stopReason, .lowDiskSpace)
        XCTAssertEqual(RecordingEvent.read(directory: call.dir).last?.reason, "low_disk_space")
        XCTAssertEqual(try CaptureReader.read(path: file).packets.map(\.bytes), call.sent, "what was recorded before the guard stopped it")
        try call.exchange(20)
        XCTAssertEqual(call.got, call.sent, "every packet forwarded, before and after the guard stopped the recording")
        call.close()
    }

    /// A `stop_recording` that arrives while the start is in flight (the
    /// blocking pool, which creates the recording's directory, held busy):
    /// it is answered, with the recording's id, once the start has run, and
    /// the recording is stopped at once; the start is answered that it was
    /// stopped as it started; nobody hears `recording_started`; the
    /// recording's files are finished and its slot freed (the room records
    /// again). The stop used to be answered at once that the room was not
    /// being recorded, though the recording it stopped was starting.
    func testAStopWhileTheStartIsInFlightStopsTheRecordingOnceStartedAndAnswersWithItsID() throws {
        fx = try RelayServerFixture(recording: true) { $0.recordMaxRunning = 1 }
        let alice = try fx.connect()
        try alice.call(.auth(token: fx.token("alice"), room: nil))
        _ = try alice.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        let bob = try fx.connect()
        try bob.call(.auth(token: fx.token("bob", publish: false, record: true), room: nil))
        _ = try bob.call(.join(room: nil, publish: false, subscribe: true, suite: nil))

        // Both of the pool's threads wait for the gate, so the recorder's start waits behind them.
        let recorder = try XCTUnwrap(fx.recording)
        let gate = DispatchSemaphore(value: 0)
        for _ in 0..<2 { try recorder.pool.run(on: fx.group.next(), { gate.wait() }, then: { _ in }) }
        let answers = Mutex<[String: Result<JSONValue, SignallingClientError>]>([:])
        for (name, request) in [("start", ClientRequest.startRecording()), ("stop", .stopRecording())] {
            try bob.onLoop { client in
                client.request(request) { result in answers.withLock { $0[name] = result } }
            }
        }
        try bob.call(.ping)   // answered after the two before it: both have been handled
        XCTAssertTrue(answers.withLock { $0.isEmpty }, "neither answered while the start is in flight")

        gate.signal()
        gate.signal()
        waitUntil("both answered") { answers.withLock { $0.count } == 2 }
        let (start, stop) = answers.withLock { ($0["start"]!, $0["stop"]!) }
        guard case .failure(.refused(_, let refusal)) = start else { return XCTFail("the start: \(start)") }
        XCTAssertEqual(refusal.code, .badRequest)
        XCTAssertTrue(refusal.message.contains("stopped as it started"), refusal.message)
        let id = try XCTUnwrap(try stop.get()["recording"]?.stringValue)
        XCTAssertEqual(try stop.get()["room"]?.stringValue, "call")
        let dir = fx.dataDir + "/recordings/" + id
        waitUntil("the recording is finished") { (try? RecordingIndex.read(directory: dir))?.stoppedAtMillis != nil }
        XCTAssertThrowsError(try bob.call(.stopRecording()), "nothing left to stop")
        XCTAssertTrue(alice.takeQueued().allSatisfy { $0["type"]?.stringValue != "recording_started" })

        // Its slot (record-max-running 1) is freed once the recorder has told it finished (after the index is
        // written): the room records again. A start refused for the slot changes nothing.
        var again: String?
        waitUntil("the room records again") {
            again = try? bob.call(.startRecording())["recording"]?.stringValue
            return again != nil
        }
        XCTAssertNotEqual(again, id)
        XCTAssertEqual(try alice.nextEvent("recording_started")["room"]?.stringValue, "call")
        alice.close()
        bob.close()
    }

    /// The admin API's stop while the start is in flight (the pool held, as
    /// above): answered 200 with the recording's id once the start has run
    /// (it was 404, "not being recorded", though the stop took effect).
    func testAnAdminStopWhileTheStartIsInFlightAnswersWithTheRecordingsID() throws {
        fx = try RelayServerFixture(recording: true)
        let alice = try fx.connect()
        try alice.call(.auth(token: fx.token("alice"), room: nil))
        _ = try alice.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        let recorder = try XCTUnwrap(fx.recording)
        let gate = DispatchSemaphore(value: 0)
        for _ in 0..<2 { try recorder.pool.run(on: fx.group.next(), { gate.wait() }, then: { _ in }) }
        let bob = try fx.connect()
        try bob.call(.auth(token: fx.token("bob", publish: false, record: true), room: nil))
        _ = try bob.call(.join(room: nil, publish: false, subscribe: true, suite: nil))
        let started = Mutex<Result<JSONValue, SignallingClientError>?>(nil)
        try bob.onLoop { client in client.request(.startRecording()) { r in started.withLock { $0 = r } } }
        try bob.call(.ping)   // the start has been handled: it waits for the pool

        let admin = "Authorization: Bearer \(fx.token("ops", room: nil, admin: true))"
        let port = Int(fx.front.address.port)
        let requests = MetricsRegistry.shared.counter("parley_http_requests_total", help: "HTTP requests received")
        let before = requests.current
        let stop = Mutex<String?>(nil)
        DispatchQueue.global().async {
            let answer = (try? httpRequest(port, "DELETE", "/admin/rooms/call/recording", headers: [admin])) ?? "no answer"
            stop.withLock { $0 = answer }
        }
        // The DELETE reached the server before the pool runs (if it came after, it would stop a running
        // recording and answer the same; the test would then only not catch the old 404).
        waitUntil("the DELETE received") { requests.current > before }
        gate.signal()
        gate.signal()
        waitUntil("the stop answered") { stop.withLock { $0 } != nil }
        let answer = try XCTUnwrap(stop.withLock { $0 })
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        waitUntil("the start answered") { started.withLock { $0 } != nil }
        let idLine = answer.split(separator: "\r\n\r\n").last.map(String.init) ?? ""
        let id = try XCTUnwrap(try JSONValue.parse(idLine)["recording"]?.stringValue)
        let dir = fx.dataDir + "/recordings/" + id
        waitUntil("the recording is finished") { (try? RecordingIndex.read(directory: dir))?.stoppedAtMillis != nil }
        alice.close()
        bob.close()
    }

    func testAdminAPIStartsAndStopsAndRecordRoomsRecordsMatchingCallsUntilTheyClose() throws {
        fx = try RelayServerFixture(recording: true) { $0.recordRooms = ["auto-*"] }
        let admin = "Authorization: Bearer \(fx.token("ops", room: nil, admin: true))"
        let port = Int(fx.front.address.port)
        XCTAssertTrue(try httpRequest(port, "POST", "/admin/rooms/call/recording", headers: [admin]).hasPrefix("HTTP/1.1 404"),
                      "no call to record")
        XCTAssertTrue(try httpRequest(port, "POST", "/admin/rooms/call/recording",
                                      headers: ["Authorization: Bearer \(fx.token("bob", record: true))"]).hasPrefix("HTTP/1.1 403"),
                      "the admin API takes admin tokens only")

        let alice = try fx.connect()
        try alice.call(.auth(token: fx.token("alice"), room: nil))
        _ = try alice.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        let start = try httpRequest(port, "POST", "/admin/rooms/call/recording", headers: [admin])
        XCTAssertTrue(start.hasPrefix("HTTP/1.1 201"), start)
        XCTAssertEqual(try alice.nextEvent("recording_started")["room"]?.stringValue, "call")
        let rooms = try httpRequest(port, "GET", "/admin/rooms", headers: [admin])
        XCTAssertTrue(rooms.contains("\"recording\":true"), rooms)
        let stop = try httpRequest(port, "DELETE", "/admin/rooms/call/recording", headers: [admin])
        XCTAssertTrue(stop.hasPrefix("HTTP/1.1 200"), stop)
        XCTAssertEqual(try alice.nextEvent("recording_stopped")["room"]?.stringValue, "call")
        XCTAssertTrue(try httpRequest(port, "DELETE", "/admin/rooms/call/recording", headers: [admin]).hasPrefix("HTTP/1.1 404"))

        // record-rooms: a matching room records from its first join; its recording stops when the call closes.
        let bob = try fx.connect()
        try bob.call(.auth(token: fx.token("bob", room: "auto-1"), room: nil))
        _ = try bob.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        XCTAssertEqual(try bob.nextEvent("recording_started")["room"]?.stringValue, "auto-1")
        try bob.call(.leave)
        let recordings = fx.dataDir + "/recordings"
        waitUntil("auto-1's recording is finished") {
            let ids = (try? FileManager.default.contentsOfDirectory(atPath: recordings)) ?? []
            return ids.contains { $0.hasPrefix("auto-1-") && (try? RecordingIndex.read(directory: recordings + "/" + $0))?.stoppedAtMillis != nil }
        }
        let ids = try FileManager.default.contentsOfDirectory(atPath: recordings)
        XCTAssertEqual(ids.filter { $0.hasPrefix("call-") }.count, 1)
        XCTAssertEqual(ids.filter { $0.hasPrefix("auto-1-") }.count, 1)
        XCTAssertTrue(RecordingService.matches("auto-1", pattern: "auto-*"))
        XCTAssertTrue(RecordingService.matches("a-b", pattern: "a?b"))
        XCTAssertFalse(RecordingService.matches("call", pattern: "auto-*"))
        alice.close()
        bob.close()
    }

    /// `record-export: worker`: a stopped recording becomes a `record-export`
    /// job naming its id (the server exports nothing itself); `parley
    /// worker`'s Worker runs it and the files appear; a job naming no
    /// recording fails at once; the job view (GET /jobs) names the recording id, no path.
    func testWorkerModeQueuesARecordExportJobThatTheWorkerRuns() throws {
        fx = try RelayServerFixture(recording: true) { $0.recordExport = .worker }
        let admin = "Authorization: Bearer \(fx.token("ops", room: nil, admin: true))"
        let port = Int(fx.front.address.port)
        let alice = try fx.connect()
        try alice.call(.auth(token: fx.token("alice"), room: nil))
        let join = try alice.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        let ssrc = UInt32(try XCTUnwrap(join["ssrcs"]?["audio"]?.intValue))
        _ = try alice.call(.publish([.opus(ssrc: ssrc)]))
        let start = try httpRequest(port, "POST", "/admin/rooms/call/recording", headers: [admin])
        XCTAssertTrue(start.hasPrefix("HTTP/1.1 201"), start)
        let recordings = fx.dataDir + "/recordings"
        let id = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: recordings).first { $0.hasPrefix("call-") })
        let dir = recordings + "/" + id
        let peer = try MediaPeer(join: join)
        for _ in 0..<10 { _ = try peer.sendNext(ssrc: ssrc) }
        waitUntil("the packets are written") {
            ((try? CaptureReader.read(path: dir + "/track-alice_\(ssrc).pcapng"))?.packets.count ?? 0) >= 10
        }
        XCTAssertTrue(try httpRequest(port, "DELETE", "/admin/rooms/call/recording", headers: [admin]).hasPrefix("HTTP/1.1 200"))

        let queue = try SQLiteJobQueue.open(dataDir: fx.dataDir)
        waitUntil("a record-export job names the recording") {
            (try? queue.list())?.contains { $0.kind == .recordExport && $0.input == id && $0.state == .queued } == true
        }
        XCTAssertEqual(try queue.enqueueRecordExport(recording: id), try queue.list().first { $0.input == id }?.id, "one job per recording")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/mix.ogg"), "the server left the export to the worker")
        let bogus = try queue.enqueueRecordExport(recording: "../etc")

        var c = Worker.Config()
        c.dataDir = fx.dataDir
        c.once = true
        c.pollInterval = 0.05
        try Worker(config: c, log: quietLogger).run()
        let job = try XCTUnwrap(try queue.list().first { $0.input == id })
        XCTAssertEqual(job.state, .done, job.error ?? "")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/alice.webm"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/mix.ogg"))
        XCTAssertEqual(try queue.get(bogus)?.state, .failed)
        XCTAssertEqual(try queue.get(bogus)?.error, "permanent: not a recording id")

        // What GET /jobs shows of it (TranscodeRoutes' view).
        let view = JobView.json(job, dataDir: fx.dataDir)
        XCTAssertEqual(view["kind"]?.stringValue, "record-export")
        XCTAssertEqual(view["recording"]?.stringValue, id)
        XCTAssertFalse(view.serialized.contains(fx.dataDir), "no server path in the job view: \(view.serialized)")
        XCTAssertFalse(JobView.json(try XCTUnwrap(try queue.get(bogus)), dataDir: fx.dataDir).serialized.contains(fx.dataDir))
        alice.close()
    }
}

/// Alice publishes one Opus track and Bob, holding the `rec` grant,
/// records the room and subscribes to the track; both media peers are
/// bound. `beforePublish` gets the path of Alice's capture file once the
/// recording has started and before the track (so before the recorder
/// opens it).
private final class RecordedCall {
    let alice: BlockingSignallingClient, bob: BlockingSignallingClient
    /// DATA-DIR/recordings/ID.
    let dir: String
    let ssrc: UInt32
    let publisher: MediaPeer, subscriber: MediaPeer
    /// What Alice sent and Bob received, in order.
    private(set) var sent: [[UInt8]] = [], got: [[UInt8]] = []

    init(_ fx: RelayServerFixture, beforePublish: (String) throws -> Void = { _ in }) throws {
        alice = try fx.connect()
        try alice.call(.auth(token: fx.token("alice"), room: nil))
        let joinA = try alice.call(.join(room: nil, publish: true, subscribe: false, suite: nil))
        bob = try fx.connect()
        try bob.call(.auth(token: fx.token("bob", publish: false, record: true), room: nil))
        let joinB = try bob.call(.join(room: nil, publish: false, subscribe: true, suite: nil))
        let id = try XCTUnwrap(try bob.call(.startRecording())["recording"]?.stringValue)
        dir = fx.dataDir + "/recordings/" + id
        ssrc = UInt32(try XCTUnwrap(joinA["ssrcs"]?["audio"]?.intValue))
        try beforePublish(dir + "/track-alice_\(ssrc).pcapng")
        let pub = try alice.call(.publish([.opus(ssrc: ssrc)]))
        try bob.call(.subscribe(track: try XCTUnwrap(pub["tracks"]?.arrayValue?.first?["id"]?.stringValue)))
        publisher = try MediaPeer(join: joinA)
        subscriber = try MediaPeer(join: joinB)
        XCTAssertTrue(subscriber.bind(ufrag: try XCTUnwrap(joinB["ice"]?["ufrag"]?.stringValue),
                                      password: try XCTUnwrap(joinB["ice"]?["pwd"]?.stringValue)))
    }

    /// Alice sends `n` packets, Bob receiving each before the next is sent.
    func exchange(_ n: Int) throws {
        for _ in 0..<n {
            sent.append(try publisher.sendNext(ssrc: ssrc))
            if let p = try subscriber.receiveRTP() { got.append(p) }
        }
    }

    func close() {
        alice.close()
        bob.close()
    }
}
