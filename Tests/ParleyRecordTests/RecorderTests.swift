import Foundation
import ParleyCore
import ParleyRTP
import ParleyTestSupport
import XCTest
@testable import ParleyRecord

/// The recorder on real files: what it writes, its queue bound, its disk
/// limits (size cap, free-space guard, a real ENOSPC from /dev/full), and
/// what survives a SIGKILL.
final class RecorderTests: XCTestCase {
    let sender = Sender(ssrc: 0x51, payloadType: 111, clockRate: 48_000)
    lazy var track = roomTrack("sam", 0x51, "opus", payloadType: 111)

    func makeRecorder(_ name: String, _ configure: (inout RecordingLimits) -> Void = { _ in }) -> (Recorder, StopWaiter, MetricsRegistry, String) {
        let root = tempDir("recorder-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        var limits = RecordingLimits()
        limits.minFreeBytes = 0
        configure(&limits)
        let stops = StopWaiter(), metrics = MetricsRegistry()
        let recorder = Recorder(directory: root, limits: limits, metrics: metrics, onStop: stops.callback)
        addTeardownBlock { recorder.shutdown() }
        return (recorder, stops, metrics, root)
    }

    func value(_ metrics: MetricsRegistry, _ name: String) -> Int {
        metrics.render().split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? -1
    }

    func testPacketQueueIsBoundedAndHandsPacketsOverInOrder() {
        let q = PacketQueue(capacity: 3, slotSize: 8)
        for i in 0..<3 {
            XCTAssertEqual([UInt8(i)].withUnsafeBytes { q.push(recording: 1, ssrc: 9, rtcp: false, arrivalNanos: Int64(i), bytes: $0) }, i + 1,
                           "a push says how many are queued")
        }
        XCTAssertNil([UInt8(3)].withUnsafeBytes { q.push(recording: 1, ssrc: 9, rtcp: false, arrivalNanos: 3, bytes: $0) }, "full")
        XCTAssertNil([UInt8](repeating: 0, count: 9).withUnsafeBytes {
            PacketQueue(capacity: 1, slotSize: 8).push(recording: 1, ssrc: 9, rtcp: false, arrivalNanos: 0, bytes: $0)
        }, "larger than a slot")
        XCTAssertEqual(PacketQueue(capacity: 4096).wakeCount, 1024, "a quarter full wakes the recorder")
        var seen: [UInt8] = []
        q.drain { slot, bytes in seen.append(bytes[0]); XCTAssertEqual(slot.arrivalNanos, Int64(bytes[0])) }
        XCTAssertEqual(seen, [0, 1, 2])
        XCTAssertTrue(q.isEmpty)
        // The ring wraps.
        for i in 4..<6 { XCTAssertNotNil([UInt8(i)].withUnsafeBytes { q.push(recording: 1, ssrc: 9, rtcp: true, arrivalNanos: Int64(i), bytes: $0) }) }
        seen = []
        q.drain { _, bytes in seen.append(bytes[0]) }
        XCTAssertEqual(seen, [4, 5])
    }

    func testARecordingWritesItsIndexEventsAndOneCaptureFilePerTrack() throws {
        let (recorder, stops, metrics, root) = makeRecorder("files") { $0.queueSlots = 64 }
        let r = try recorder.start(id: "rec-1", room: "standup")
        XCTAssertThrowsError(try recorder.start(id: "rec-1", room: "standup")) { XCTAssertEqual($0 as? RecordError, .alreadyRecording("rec-1")) }
        XCTAssertThrowsError(try recorder.start(id: "../etc", room: "x"))
        r.add(track)
        r.note(RecordingEvent(.join, participant: "sam"))
        let start = try RecordingIndex.read(directory: root + "/rec-1").startedAtMillis * 1_000_000
        let sent = audioTrack(sender, packets: try opusTone(hz: 500, seconds: 1), startSeconds: 0, startNanos: start)
        let refused = feed(r, { _ in 0x51 }, sent)
        r.note(RecordingEvent(.mute, participant: "sam", track: track.id))
        r.note(RecordingEvent(.leave, participant: "sam"))
        r.stop()
        XCTAssertEqual(stops.wait("rec-1"), .requested)
        XCTAssertFalse(r.isActive)
        XCTAssertFalse([0x80].withUnsafeBytes { r.captureRTP(ssrc: 0x51, $0, arrivalNanos: 0) }, "a stopped recording takes nothing")

        let dir = root + "/rec-1"
        let index = try RecordingIndex.read(directory: dir)
        XCTAssertEqual(index.room, "standup")
        XCTAssertEqual(index.participants, ["sam"])
        XCTAssertEqual(index.tracks, [track])
        XCTAssertEqual(index.stopReason, .requested)
        XCTAssertEqual(index.clockMappings[track.id]?.count, 1, "the one SR the sender sent")
        XCTAssertEqual(RecordingEvent.read(directory: dir).map(\.kind), [.started, .trackAdded, .join, .mute, .leave, .stopped])
        let capture = try CaptureReader.read(path: dir + "/" + track.captureFile)
        XCTAssertEqual(capture.tornBytes, 0)
        XCTAssertEqual(capture.packets.count + refused, sent.count)
        XCTAssertEqual(capture.packets.filter(\.isRTCP).count, 1)
        XCTAssertEqual(value(metrics, "parley_record_packets_total"), capture.packets.count)
        XCTAssertEqual(value(metrics, "parley_record_dropped_total"), refused)
        XCTAssertEqual(value(metrics, "parley_record_recordings"), 0)
    }

    /// Recordings running at once, their packets interleaved, each get
    /// their own (the recorder's `TrackTable`, keyed by recording and SSRC):
    /// 5 recordings of the same 3 SSRCs; one stops halfway and another
    /// starts then, with the same SSRCs again.
    func testInterleavedRecordingsOfTheSameSSRCsEachGetTheirOwnPackets() throws {
        let (recorder, stops, _, root) = makeRecorder("many") { $0.queueSlots = 4096 }
        let ssrcs: [UInt32] = [7, 8, 9]
        func start(_ id: String) throws -> Recording {
            let r = try recorder.start(id: id, room: id)
            for s in ssrcs { r.add(roomTrack("p\(s)", s, "opus", payloadType: 111)) }
            return r
        }
        var running = try (0..<5).map { try start("m\($0)") }
        var expected: [String: [[UInt8]]] = [:]  // "ID/SSRC"
        func send(rounds: Range<Int>) {
            for round in rounds {
                for (k, r) in running.enumerated() {
                    for s in ssrcs {
                        var p: [UInt8] = [0x80, 111, 0, UInt8(round), 0, 0, 0, 0, 0, 0, 0, UInt8(s)]
                        p += Array("\(r.id) \(s) \(round)".utf8) + [UInt8](repeating: UInt8(k), count: 20)
                        XCTAssertTrue(p.withUnsafeBytes { r.captureRTP(ssrc: s, $0, arrivalNanos: 1) })
                        expected["\(r.id)/\(s)", default: []].append(p)
                    }
                }
            }
        }
        send(rounds: 0..<20)
        running[2].stop()
        XCTAssertEqual(stops.wait("m2"), .requested)
        running[2] = try start("m5")
        send(rounds: 20..<40)
        for r in running { r.stop() }
        for id in ["m0", "m1", "m3", "m4", "m5"] { XCTAssertEqual(stops.wait(id), .requested) }
        for (key, packets) in expected {
            let parts = key.split(separator: "/")
            let capture = try CaptureReader.read(path: root + "/\(parts[0])/track-p\(parts[1])_\(parts[1]).pcapng")
            XCTAssertEqual(capture.packets.map(\.bytes), packets, key)
        }
        XCTAssertEqual(expected.count, 6 * 3)
    }

    func testTheSizeCapStopsTheRecordingWithAnEvent() throws {
        let (recorder, stops, _, root) = makeRecorder("cap") { $0.maxBytes = 8_192 }
        let r = try recorder.start(id: "capped", room: "r")
        r.add(track)
        let sent = audioTrack(sender, packets: try opusTone(hz: 500, seconds: 2), startSeconds: 0, startNanos: wallClockNanos())
        feed(r, { _ in 0x51 }, sent)
        XCTAssertEqual(stops.wait("capped"), .sizeCap)
        XCTAssertFalse(r.isActive)
        let dir = root + "/capped"
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/" + track.captureFile)[.size] as! Int
        XCTAssertLessThanOrEqual(size, 8_192)
        XCTAssertGreaterThan(size, 4_096)
        XCTAssertEqual(try CaptureReader.read(path: dir + "/" + track.captureFile).tornBytes, 0)
        XCTAssertEqual(RecordingEvent.read(directory: dir).last, RecordingEvent(.stopped, atMillis: RecordingEvent.read(directory: dir).last!.atMillis, reason: "size_cap"))
        XCTAssertEqual(try RecordingIndex.read(directory: dir).stopReason, .sizeCap)
    }

    func testTheFreeSpaceGuardStopsBeforeTheDiskFills() throws {
        let (recorder, stops, _, root) = makeRecorder("free") { $0.minFreeBytes = .max }
        let r = try recorder.start(id: "guarded", room: "r")
        XCTAssertEqual(stops.wait("guarded"), .lowDiskSpace)
        XCTAssertFalse(r.isActive)
        XCTAssertEqual(RecordingEvent.read(directory: root + "/guarded").last?.reason, "low_disk_space")
    }

    func testENOSPCStopsTheRecordingAndTheRecorderGoesOn() throws {
        let (recorder, stops, _, root) = makeRecorder("enospc")
        let r = try recorder.start(id: "full", room: "r")
        // A real ENOSPC: the track's capture file is /dev/full.
        XCTAssertEqual(symlink("/dev/full", root + "/full/" + track.captureFile), 0)
        r.add(track)
        feed(r, { _ in 0x51 }, audioTrack(sender, packets: try opusTone(hz: 500, seconds: 0.2), startSeconds: 0, startNanos: wallClockNanos()))
        XCTAssertEqual(stops.wait("full"), .diskFull)
        XCTAssertEqual(RecordingEvent.read(directory: root + "/full").last?.reason, "disk_full")
        // The next recording records.
        let next = try recorder.start(id: "after", room: "r")
        next.add(track)
        feed(next, { _ in 0x51 }, audioTrack(sender, packets: try opusTone(hz: 500, seconds: 0.2), startSeconds: 0, startNanos: wallClockNanos()))
        next.stop()
        XCTAssertEqual(stops.wait("after"), .requested)
        XCTAssertEqual(try CaptureReader.read(path: root + "/after/" + track.captureFile).packets.count, 10)
    }

    // MARK: SIGKILL

    static let childVariable = "PARLEY_RECORD_CRASH_DIR"

    /// A child process (this test binary running `testChildRecordsUntilKilled`)
    /// records a tone in real time; it is SIGKILLed mid-recording. The
    /// capture reads back, and the export plays up to the kill.
    func testAfterSIGKILLTheExportCoversTheRecordingUpToTheKill() throws {
        let root = tempDir("record-crash")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = ["ParleyRecordTests.RecorderTests/testChildRecordsUntilKilled"]
        child.environment = ProcessInfo.processInfo.environment.merging([Self.childVariable: root]) { $1 }
        child.standardOutput = FileHandle.nullDevice
        child.standardError = FileHandle.nullDevice
        try child.run()
        let pid = child.processIdentifier
        let hangGuard = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: hangGuard)

        // Kill it once 1.5 s of audio (75 packets) reads back from the growing file.
        let file = root + "/crash/" + track.captureFile
        while child.isRunning, ((try? CaptureReader.read(path: file))?.packets.count ?? 0) < 75 { usleep(20_000) }
        kill(pid, SIGKILL)
        child.waitUntilExit()
        hangGuard.cancel()
        XCTAssertEqual(child.terminationReason, .uncaughtSignal, "the child was killed, not finished")

        let dir = root + "/crash"
        let capture = try CaptureReader.read(path: file)
        XCTAssertGreaterThanOrEqual(capture.packets.count, 75)
        let index = try RecordingIndex.read(directory: dir)
        XCTAssertNil(index.stopReason, "nobody wrote a stop")
        let covered = Double(capture.packets.last!.arrivalNanos / 1_000_000 - index.startedAtMillis) / 1000
        let result = try Exporter.export(directory: dir)
        XCTAssertEqual(result.files.map { URL(fileURLWithPath: $0).lastPathComponent }, ["sam.webm", "mix.ogg"])
        for f in result.files {
            let p = try probe(f)
            XCTAssertEqual(p.streams, ["audio:opus"])
            XCTAssertEqual(p.duration, covered, accuracy: 1.0, "\(f) plays up to the kill")
        }
    }

    /// The child's half: only runs with `PARLEY_RECORD_CRASH_DIR` set.
    func testChildRecordsUntilKilled() throws {
        guard let root = ProcessInfo.processInfo.environment[Self.childVariable] else {
            throw XCTSkip("runs only as the child of testAfterSIGKILLTheExportCoversTheRecordingUpToTheKill")
        }
        let recorder = Recorder(directory: root, metrics: MetricsRegistry())
        let r = try recorder.start(id: "crash", room: "r")
        r.add(track)
        r.note(RecordingEvent(.join, participant: "sam"))
        // Hang guard: the parent kills us long before a minute of tone.
        let packets = try opusTone(hz: 500, seconds: 60)
        let start = wallClockNanos()
        for (i, p) in packets.enumerated() {
            let bytes = sender.rtp(i, Int64(i * 960), marker: i == 0, p)
            bytes.withUnsafeBytes { _ = r.captureRTP(ssrc: 0x51, $0, arrivalNanos: wallClockNanos()) }
            let due = start + Int64(i + 1) * 20_000_000
            let wait = due - wallClockNanos()
            if wait > 0 { usleep(UInt32(wait / 1000)) }
        }
        XCTFail("the parent should have killed this process")
    }
}

/// Retention deletes recordings untouched for longer than the limit, and only those.
final class RetentionTests: XCTestCase {
    func testRecordingsUntouchedForLongerThanTheLimitAreDeleted() throws {
        let root = tempDir("retention")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for id in ["old", "recent", "not-a-recording"] {
            try FileManager.default.createDirectory(atPath: root + "/" + id, withIntermediateDirectories: true)
            if id != "not-a-recording" { try Data("{}".utf8).write(to: URL(fileURLWithPath: root + "/\(id)/index.json")) }
            try Data([1]).write(to: URL(fileURLWithPath: root + "/\(id)/track-a.pcapng"))
        }
        let tenDaysAgo = Date().addingTimeInterval(-10 * 86_400)
        for f in ["index.json", "track-a.pcapng"] {
            try FileManager.default.setAttributes([.modificationDate: tenDaysAgo], ofItemAtPath: root + "/old/" + f)
        }
        try FileManager.default.setAttributes([.modificationDate: tenDaysAgo], ofItemAtPath: root + "/not-a-recording/track-a.pcapng")
        XCTAssertEqual(Retention.prune(directory: root, olderThanDays: 0), [], "0 keeps everything")
        XCTAssertEqual(Retention.prune(directory: root, olderThanDays: 30), [])
        XCTAssertEqual(Retention.prune(directory: root, olderThanDays: 7), ["old"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root).sorted(), ["not-a-recording", "recent"])
    }
}
