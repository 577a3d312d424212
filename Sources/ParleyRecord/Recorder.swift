import CLinux
import Foundation
import Glibc
import ParleyCore
import ParleyRTP
import Synchronization

/// Disk limits and queue size of a `Recorder` (config keys `record-*`).
public struct RecordingLimits: Sendable {
    /// A recording stops (`size_cap`) before its files pass this many bytes.
    public var maxBytes: Int64 = 4 << 30
    /// Recording stops (`low_disk_space`) when the filesystem has less free.
    public var minFreeBytes: Int64 = 1 << 30
    /// Packets the queue to the recorder thread holds; beyond, they are dropped and counted.
    public var queueSlots = 4096
    /// How often the syncer syncs the recordings' filesystem (`syncfs`: one
    /// journal commit and cache flush for every file, whatever it writes).
    public var syncInterval: Double = 1.0
    /// How often the index is handed to the syncer and free space checked.
    public var checkInterval: Double = 0.5
    /// Recordings untouched for this many days are deleted (at start, then hourly); 0 keeps them.
    public var retentionDays = 0
    public init() {}
}

/// The recording engine of a process: one recorder thread writing every
/// running `Recording` to DIR/ID/ (one pcapng capture file per track,
/// `index.json`, `events.log`). The packet path hands packets over through
/// a bounded `PacketQueue` and never waits; files are fsynced at least once
/// a second. A recording that hits a disk limit or a write error stops with
/// a `stopped` event and `onStop`; the recorder and its caller go on.
public final class Recorder: @unchecked Sendable {
    public let directory: String
    public let limits: RecordingLimits
    let queue: PacketQueue
    let metrics: RecordMetrics
    private let onStop: @Sendable (String, StopReason) -> Void

    private enum Control {
        case start(Int32, RecordingState, RecordingIndex)
        case track(Int32, RoomTrack)
        case event(Int32, RecordingEvent)
        case stop(Int32, StopReason)
    }
    private let condition = NSCondition()
    private var controls: [Control] = []
    private var shuttingDown = false
    private var finished = false
    private var nextNumber: Int32 = 1
    private var runningIDs: Set<String> = []
    private var thread: Thread?

    // Recorder thread only.
    private var writers: [Int32: RecordingWriter] = [:]
    /// Where each packet of `writers`' tracks goes; stale once a track or a writer comes or goes.
    private var tracks = TrackTable()
    private var tracksStale = false
    /// Syncs the running recordings' files off the recorder thread.
    private let syncer: Syncer

    /// - Parameters:
    ///   - directory: where recordings go (DATA-DIR/recordings); created if missing.
    ///   - onStop: called on the recorder thread when a recording stops, whatever the reason.
    public init(directory: String, limits: RecordingLimits = RecordingLimits(), metrics: MetricsRegistry = .shared,
                onStop: @escaping @Sendable (String, StopReason) -> Void = { _, _ in }) {
        self.directory = directory
        self.limits = limits
        self.queue = PacketQueue(capacity: limits.queueSlots)
        self.metrics = RecordMetrics(metrics)
        self.onStop = onStop
        syncer = Syncer(directory: directory, interval: limits.syncInterval)
        let t = Thread { [self] in
            parley_set_thread_name("parley-recorder")
            self.run()
        }
        thread = t
        t.start()
    }

    /// Starts recording `room` into DIRECTORY/`id`/. Creates the directory,
    /// `index.json` and `events.log` before returning (so it touches the
    /// disk: call it off the packet path).
    public func start(id: String, room: String) throws -> Recording {
        let safe = RecordingIndex.safeName(id)
        guard !safe.isEmpty, safe == id else { throw RecordError.badRecording(path: id, reason: "a recording id is letters, digits, - and _") }
        let dir = directory + "/" + id
        try createDirectories(dir)
        let now = wallClockNanos()
        let index = RecordingIndex(id: id, room: room, startedAtMillis: now / 1_000_000)
        let number: Int32 = try condition.withLock {
            guard !shuttingDown else { throw RecordError.badRecording(path: id, reason: "the recorder is shut down") }
            guard runningIDs.insert(id).inserted else { throw RecordError.alreadyRecording(id) }
            defer { nextNumber += 1 }
            return nextNumber
        }
        do {
            try index.write(directory: dir)
            try writeFileDurably(dir + "/" + RecordingIndex.eventsFileName,
                                 Array(RecordingEvent(.started, atMillis: now / 1_000_000).line.utf8))
            syncDirectory(dir)
        } catch {
            _ = condition.withLock { runningIDs.remove(id) }
            throw error
        }
        let state = RecordingState()
        let recording = Recording(id: id, number: number, recorder: self, state: state)
        post(.start(number, state, index))
        return recording
    }

    /// Stops every recording (`requested`), writes what is queued and ends
    /// the recorder thread. Waits for it.
    public func shutdown() {
        condition.withLock {
            shuttingDown = true
            condition.signal()
        }
        condition.withLock { while !finished { condition.wait() } }
    }

    private func post(_ c: Control) {
        condition.withLock {
            controls.append(c)
            condition.signal()
        }
    }

    fileprivate func add(_ t: RoomTrack, to n: Int32) { post(.track(n, t)) }
    fileprivate func note(_ e: RecordingEvent, to n: Int32) { post(.event(n, e)) }
    fileprivate func stop(_ n: Int32) { post(.stop(n, .requested)) }

    /// Wakes the recorder thread before its next drain is due (the queue is a quarter full).
    fileprivate func wake() { condition.withLock { condition.signal() } }

    // MARK: The recorder thread

    /// Seconds between writes of every buffered packet to the files.
    static let flushInterval = 0.2
    /// Seconds between drains of the packet queue while recordings run; a
    /// queue a quarter full (`PacketQueue.wakeCount`) wakes the thread sooner.
    static let drainInterval = 0.05

    private func run() {
        var lastSync = monotonicSeconds()
        var lastFlush = lastSync
        var lastPrune = -Double.infinity
        while true {
            let now = monotonicSeconds()
            if limits.retentionDays > 0 && now - lastPrune >= 3600 {
                lastPrune = now
                Retention.prune(directory: directory, olderThanDays: limits.retentionDays)
            }
            let (batch, stopping, queued): ([Control], Bool, Int) = condition.withLock {
                // With recordings running, drain every `drainInterval` (at once when the
                // queue is a quarter full: a producer that fills it that far signals, under
                // this lock, after its push); idle, wait for a control.
                if controls.isEmpty && !shuttingDown {
                    if writers.isEmpty {
                        _ = condition.wait(until: Date().addingTimeInterval(limits.retentionDays > 0 ? 3600 : 86_400))
                    } else if queue.count < queue.wakeCount {
                        _ = condition.wait(until: Date().addingTimeInterval(Self.drainInterval))
                    }
                }
                // Count the queued packets before taking the controls: a track is
                // added (on the producer's thread) before its packets are queued, so
                // every packet counted here has its track among the controls taken.
                let queued = queue.count
                defer { controls.removeAll() }
                return (controls, shuttingDown, queued)
            }
            var stops: [(Int32, StopReason)] = []
            for c in batch {
                switch c {
                case .start(let n, let state, let index):
                    let w = RecordingWriter(directory: directory + "/" + index.id, number: n, syncer: syncer, index: index, state: state,
                                            maxBytes: limits.maxBytes)
                    writers[n] = w
                    metrics.recordings.inc()
                    if let r = checkFreeSpace() { stops.append((n, r)) }
                case .track(let n, let t):
                    writers[n]?.add(t)
                    tracksStale = true
                case .event(let n, let e): writers[n]?.note(e)
                case .stop(let n, let r): stops.append((n, r))
                }
            }
            if tracksStale {
                tracks = TrackTable(writers.values)
                tracksStale = false
            }
            let tracks = self.tracks
            queue.drain(limit: queued) { slot, bytes in
                guard let t = tracks.find(recording: slot.recording, ssrc: slot.ssrc) else { return }
                // Unretained: `writers` holds each writer, and each writer its files, until the table is rebuilt.
                t.writer._withUnsafeGuaranteedRef { w in
                    t.file._withUnsafeGuaranteedRef { f in
                        w.append(to: f, rtcp: slot.isRTCP, arrivalNanos: slot.arrivalNanos, bytes: bytes)
                    }
                }
            }
            // Buffers go to the files when large, and all of them every
            // `flushInterval` (what a SIGKILL can lose is at most that old).
            let syncDue = monotonicSeconds() - lastSync >= limits.checkInterval
            let flushAll = syncDue || monotonicSeconds() - lastFlush >= Self.flushInterval
            if flushAll { lastFlush = monotonicSeconds() }
            for (n, e) in syncer.takeFailures() { writers[n]?.fail(e) }
            for (n, w) in writers {
                let before = w.bytesWritten
                w.flush(all: flushAll)
                metrics.bytes.inc(Int(w.bytesWritten - before))
                metrics.packets.inc(w.takePacketsWritten())
                if let r = w.stopReason { stops.append((n, r)) }
            }
            if syncDue {
                lastSync = monotonicSeconds()
                for (_, w) in writers { w.sync() }
                if let r = checkFreeSpace() { for (n, _) in writers { stops.append((n, r)) } }
            }
            if stopping { for (n, _) in writers { stops.append((n, .requested)) } }
            for (n, reason) in stops {
                guard let w = writers.removeValue(forKey: n) else { continue }
                tracksStale = true
                let before = w.bytesWritten
                let final = w.finish(reason)  // writes what is still buffered
                metrics.bytes.inc(Int(w.bytesWritten - before))
                metrics.packets.inc(w.takePacketsWritten())
                metrics.recordings.dec()
                _ = condition.withLock { runningIDs.remove(w.index.id) }
                onStop(w.index.id, final)
            }
            if stopping && writers.isEmpty {
                queue.drain { _, _ in }
                syncer.shutdown()
                condition.withLock { finished = true; condition.broadcast() }
                return
            }
        }
    }

    private func checkFreeSpace() -> StopReason? {
        var s = statvfs()
        guard statvfs(directory, &s) == 0 else { return nil }
        let free = Int64(s.f_bavail) * Int64(s.f_frsize)
        return free < limits.minFreeBytes ? .lowDiskSpace : nil
    }
}

/// Shared by a `Recording` handle and its writer: whether it still records.
final class RecordingState: Sendable {
    let active = Atomic<Bool>(true)
}

/// One running recording: what the packet path and the control plane call.
/// `capture…` may be called from any thread and never blocks; the rest posts
/// to the recorder thread and returns at once.
public final class Recording: Sendable {
    public let id: String
    let number: Int32
    private let recorder: Recorder
    private let state: RecordingState

    init(id: String, number: Int32, recorder: Recorder, state: RecordingState) {
        self.id = id; self.number = number; self.recorder = recorder; self.state = state
    }

    /// False once stopped, by `stop()` or by a disk limit.
    public var isActive: Bool { state.active.load(ordering: .relaxed) }

    /// Adds a track (and its participant, on first sight); add it before its packets.
    public func add(_ track: RoomTrack) { recorder.add(track, to: number) }

    /// Appends a join, leave, mute or track change to `events.log`.
    public func note(_ event: RecordingEvent) { recorder.note(event, to: number) }

    /// Queues one decrypted RTP packet of the track `ssrc` (allocation-free).
    /// False when it was dropped: the queue was full, the packet too large,
    /// or the recording stopped.
    @discardableResult
    public func captureRTP(ssrc: UInt32, _ bytes: UnsafeRawBufferPointer, arrivalNanos: Int64) -> Bool {
        capture(ssrc: ssrc, rtcp: false, bytes, arrivalNanos)
    }

    /// Queues one decrypted RTCP packet (a compound holding the sender's SR) of `ssrc`.
    @discardableResult
    public func captureRTCP(ssrc: UInt32, _ bytes: UnsafeRawBufferPointer, arrivalNanos: Int64) -> Bool {
        capture(ssrc: ssrc, rtcp: true, bytes, arrivalNanos)
    }

    private func capture(ssrc: UInt32, rtcp: Bool, _ bytes: UnsafeRawBufferPointer, _ arrival: Int64) -> Bool {
        guard isActive else { return false }
        guard let queued = recorder.queue.push(recording: number, ssrc: ssrc, rtcp: rtcp, arrivalNanos: arrival, bytes: bytes) else {
            recorder.metrics.dropped.inc()
            return false
        }
        if queued == recorder.queue.wakeCount { recorder.wake() }
        return true
    }

    /// Stops the recording; the files are complete once `onStop` has run.
    public func stop() {
        guard state.active.exchange(false, ordering: .relaxed) else { return }
        recorder.stop(number)
    }
}

/// The `parley_record_*` metrics.
struct RecordMetrics: Sendable {
    let packets: Counter
    let bytes: Counter
    let dropped: Counter
    let recordings: Gauge
    init(_ r: MetricsRegistry) {
        packets = r.counter("parley_record_packets_total", help: "RTP and RTCP packets written to recordings")
        bytes = r.counter("parley_record_bytes_total", help: "Bytes written to recording capture files")
        dropped = r.counter("parley_record_dropped_total", help: "Packets dropped from recordings because the recorder queue was full")
        recordings = r.gauge("parley_record_recordings", help: "Recordings running")
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func createDirectories(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw RecordError.system(function: "mkdir", path: path, errno: Int32((error as NSError).code))
    }
}
