import CLinux
import Foundation
import Synchronization
import ParleyCore
import ParleyIO
import ParleyProtocol
import ParleyRecord
import ParleyRelay
import ParleySignalling
import ParleyTranscode

/// The daemon's recording: ParleyRecord's `Recorder` (DATA-DIR/recordings)
/// fed by the relay's tap, as the signalling layer's `RecordingBackend`.
///
/// Starting a recording creates its directory on the blocking pool (it
/// touches the disk), then sets the room's tap on the room's loop; from
/// then on the tap hands each forwarded RTP packet, each sender report and
/// each join, leave, track and mute change to the `Recording`, which queues
/// them for the recorder thread without waiting (a full queue drops the
/// packet from the recording and counts it; forwarding goes on). When a
/// recording stops — asked, the room closed, or a disk limit — the
/// recorder thread finishes its files, the signalling side is told, and
/// the export runs as `record-export` says: on the server's own export
/// thread (never the blocking pool the HTTP routes share), or as a
/// `record-export` job for `parley worker`. At shutdown, exports not yet
/// done become worker jobs (a row each in DATA-DIR/parley.db).
public final class RoomRecorder: RecordingBackend, Sendable {
    public let recorder: Recorder
    let relay: Relay
    let pool: BlockingPool
    /// The loop pool work reports back to.
    let loop: EventLoop
    /// Recordings that may run at once (`record-max-running`); one more is refused.
    let maxRunning: Int
    private let log: Logger
    private let exports: (ok: Counter, failed: Counter, queued: Counter)
    private let exporter: ExportThread

    /// A recording from the moment its start is asked for until the
    /// recorder has finished it and signalling has been told.
    private struct Running {
        var room: String
        var recording: Recording?
        /// The start's completion has run: an end is told to signalling at once.
        var announced = false
        /// Why it ended, when the recorder finished it before its start was announced
        /// (a disk limit at its first check); told right after the announcement.
        var endedEarly: StopReason?
    }
    private let running = Mutex<[String: Running]>([:])
    /// Told when a recording stops on its own (set once signalling exists).
    private let onEnded = Mutex<(@Sendable (_ room: String, _ id: String, _ reason: String) -> Void)?>(nil)

    /// - Parameters:
    ///   - directory: DATA-DIR/recordings.
    ///   - loop: where the pool's results come back to (any loop of the daemon).
    ///   - export: where exports run (`record-export`).
    ///   - exportOptions: what the export thread writes besides the per-participant files and the mix (`record-grid*`).
    ///   - jobs: the worker's queue (DATA-DIR/parley.db): `record-export: worker` jobs, and exports left at shutdown.
    public init(directory: String, limits: RecordingLimits, maxRunning: Int = 50, export: RecordExportMode = .thread,
                exportOptions: ExportOptions = ExportOptions(), jobs: (any JobQueue)? = nil, relay: Relay, pool: BlockingPool, loop: EventLoop,
                metrics: MetricsRegistry = .shared, logger: Logger = Logger(label: "parley.record")) {
        self.maxRunning = maxRunning
        self.relay = relay
        self.pool = pool
        self.loop = loop
        self.log = logger
        let help = "Exports of stopped recordings, by result (queued: handed to parley worker as a record-export job)"
        exports = (metrics.counter("parley_record_exports_total", help: help, labels: [("result", "ok")]),
                   metrics.counter("parley_record_exports_total", help: help, labels: [("result", "failed")]),
                   metrics.counter("parley_record_exports_total", help: help, labels: [("result", "queued")]))
        exporter = ExportThread(directory: directory, mode: export, options: exportOptions, jobs: jobs, backlog: maxRunning, log: logger,
                                counters: exports)
        // The recorder's onStop is fixed at its creation, before self exists: it calls through a box.
        let box = StopBox()
        recorder = Recorder(directory: directory, limits: limits, metrics: metrics) { id, reason in
            box.handler.withLock { $0 }?(id, reason)
        }
        box.handler.withLock { $0 = { [weak self] id, reason in self?.stopped(id: id, reason: reason) } }
    }

    /// Where recordings that stop on their own are reported (the signalling service).
    public func connect(signalling: SignallingService) {
        onEnded.withLock { $0 = { room, id, reason in signalling.recordingEnded(room: room, id: id, reason: reason) } }
    }

    // MARK: RecordingBackend

    public func start(room: String, completion: @escaping @Sendable (Result<String, SignallingError>) -> Void) {
        let id = Self.newID(room: room)
        let recorder = self.recorder
        // Registered before the recorder has it: the recorder may finish it (a disk
        // limit at its first check) before the start is announced.
        let admitted = running.withLock { m -> Bool in
            guard m.count < maxRunning else { return false }
            m[id] = Running(room: room)
            return true
        }
        guard admitted else {
            completion(.failure(SignallingError(.internalError, "the server records \(maxRunning) rooms already (record-max-running)")))
            return
        }
        do {
            try pool.run(on: loop, { try recorder.start(id: id, room: room) }, then: { [self] result in
                switch result {
                case .failure(let e):
                    _ = running.withLock { $0.removeValue(forKey: id) }
                    log.warn("recording could not start", ["room": .string(room), "error": .string("\(e)")])
                    completion(.failure(SignallingError(.internalError, "the recording could not start")))
                case .success(let recording):
                    running.withLock { $0[id]?.recording = recording }
                    relay.setTap(room: room, recording.relayTap) { [self] r in
                        if case .failure = r {
                            recording.stop()  // the call closed meanwhile
                            completion(.failure(SignallingError(.badRequest, "room \(room) has no call to record")))
                        } else {
                            completion(.success(id))
                        }
                        announced(id)
                    }
                }
            })
        } catch {
            _ = running.withLock { $0.removeValue(forKey: id) }
            completion(.failure(SignallingError(.internalError, "the server is busy; try again")))
        }
    }

    /// The start's completion has run (signalling knows the recording, or
    /// that it failed): a recording the recorder already finished is told
    /// now, after it (completion and end reach the signalling loop in order).
    private func announced(_ id: String) {
        let early = running.withLock { m -> (room: String, reason: StopReason)? in
            guard let r = m[id] else { return nil }
            guard let reason = r.endedEarly else {
                m[id]?.announced = true
                return nil
            }
            m.removeValue(forKey: id)
            return (r.room, reason)
        }
        if let early { onEnded.withLock { $0 }?(early.room, id, early.reason.rawValue) }
    }

    public func stop(room: String, id: String) {
        guard let recording = running.withLock({ $0[id]?.recording }) else { return }
        relay.setTap(room: room, nil)
        recording.stop()
    }

    /// The recorder thread finished recording `id`: tell signalling (once its
    /// start is announced), hand the export on.
    private func stopped(id: String, reason: StopReason) {
        let told = running.withLock { m -> (room: String, now: Bool)? in
            guard let r = m[id] else { return nil }
            if r.announced {
                m.removeValue(forKey: id)
            } else {
                m[id]?.endedEarly = reason
            }
            return (r.room, r.announced)
        }
        guard let told else { return }
        log.info("recording finished", ["room": .string(told.room), "recording": .string(id), "reason": .string(reason.rawValue)])
        if told.now { onEnded.withLock { $0 }?(told.room, id, reason.rawValue) }
        exporter.submit(id)
    }

    /// A fresh recording id: the room's name made safe, the UTC start time, 4 random hex digits.
    static func newID(room: String) -> String {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        let stamp = String(format: "%04d%02d%02d-%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
        return String(RecordingIndex.safeName(room).prefix(64)) + "-" + stamp + "-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }

    /// Stops every recording and finishes its files (the daemon's shutdown);
    /// exports not yet done become `record-export` jobs for `parley worker`.
    public func shutdown() {
        recorder.shutdown()
        exporter.shutdown()
    }
}

/// Where a stopped recording's export runs (`record-export`).
public enum RecordExportMode: String, Sendable, CaseIterable {
    /// On the server's export thread, one recording at a time.
    case thread
    /// As a `record-export` job in DATA-DIR/parley.db, run by `parley worker`.
    case worker
    /// Not at all: `parley record export` (or a worker job) by hand.
    case none
}

/// The server's one export thread: a FIFO of recording ids, at most
/// `backlog` waiting (beyond, the export is handed to the worker queue, or
/// dropped and counted without one). In `worker` mode it only writes the
/// job rows (SQLite work kept off the recorder thread). Exports stream
/// (ParleyRecord's `Exporter`), so one at a time holds little memory.
final class ExportThread: @unchecked Sendable {
    private let directory: String
    private let mode: RecordExportMode
    private let options: ExportOptions
    private let jobs: (any JobQueue)?
    private let backlog: Int
    private let log: Logger
    private let counters: (ok: Counter, failed: Counter, queued: Counter)
    private let condition = NSCondition()
    private var waiting: [String] = []
    private var stopping = false
    private var finished = false

    init(directory: String, mode: RecordExportMode, options: ExportOptions, jobs: (any JobQueue)?, backlog: Int, log: Logger,
         counters: (ok: Counter, failed: Counter, queued: Counter)) {
        self.directory = directory
        self.mode = mode
        self.options = options
        self.jobs = jobs
        self.backlog = backlog
        self.log = log
        self.counters = counters
        // Named for the kernel (top -H, perf): Foundation's Thread.name is not.
        Thread { [self] in
            parley_set_thread_name("parley-export")
            run()
        }.start()
    }

    func submit(_ id: String) {
        guard mode != .none else { return }
        let taken: Bool = condition.withLock {
            guard !stopping, waiting.count < backlog else { return false }
            waiting.append(id)
            condition.signal()
            return true
        }
        if !taken { enqueueJob(id) }
    }

    /// Ends the thread; what was waiting becomes worker jobs. An export
    /// under way is left to finish while the process lives; its job is
    /// queued too (exports write to a temporary name and rename, so two
    /// writers never leave a torn file).
    func shutdown() {
        let (left, current): ([String], String?) = condition.withLock {
            stopping = true
            condition.broadcast()
            defer { waiting.removeAll() }
            return (waiting, running)
        }
        for id in left + (current.map { [$0] } ?? []) { enqueueJob(id) }
        condition.withLock { while !finished && running == nil { condition.wait() } }
    }

    private var running: String?

    private func run() {
        while true {
            let id: String? = condition.withLock {
                while waiting.isEmpty && !stopping { condition.wait() }
                guard !stopping else { return nil }
                running = waiting.removeFirst()
                return running
            }
            guard let id else { break }
            if mode == .worker { enqueueJob(id) } else { export(id) }
            condition.withLock { running = nil; condition.broadcast() }
        }
        condition.withLock { finished = true; condition.broadcast() }
    }

    private func export(_ id: String) {
        do {
            let out = try Exporter.export(directory: directory + "/" + id, options: options)
            counters.ok.inc()
            log.info("recording exported", ["recording": .string(id), "files": .int(out.files.count)])
            if out.tracksLeftOutOfGrid > 0 {
                log.warn("video tracks left out of grid.webm (record-grid-max-tiles)", ["recording": .string(id), "tracks": .int(out.tracksLeftOutOfGrid)])
            }
        } catch {
            counters.failed.inc()
            log.warn("recording export failed", ["recording": .string(id), "error": .string("\(error)")])
        }
    }

    private func enqueueJob(_ id: String) {
        guard let jobs else {
            counters.failed.inc()
            log.warn("recording not exported (no job queue; run parley record export)", ["recording": .string(id)])
            return
        }
        do {
            let job = try jobs.enqueueRecordExport(recording: id)
            counters.queued.inc()
            log.info("recording export queued for parley worker", ["recording": .string(id), "job": .int(Int(job))])
        } catch {
            counters.failed.inc()
            log.warn("recording export could not be queued (run parley record export)", ["recording": .string(id), "error": .string("\(error)")])
        }
    }
}

private final class StopBox: Sendable {
    let handler = Mutex<(@Sendable (String, StopReason) -> Void)?>(nil)
}

extension ServerConfig {
    /// What the server's exports write besides the per-participant files and the mix (`record-grid*`).
    public var exportOptions: ExportOptions {
        guard recordGrid else { return ExportOptions() }
        var g = GridOptions()
        g.width = recordGridWidth
        g.height = recordGridHeight
        g.maxTiles = recordGridMaxTiles
        return ExportOptions(grid: g)
    }

    /// The recorder's limits from the `record-*` keys.
    public var recordingLimits: RecordingLimits {
        var l = RecordingLimits()
        l.maxBytes = Int64(recordMaxBytes)
        l.minFreeBytes = Int64(recordMinFreeBytes)
        l.retentionDays = recordRetentionDays
        l.queueSlots = recordQueuePackets
        return l
    }
}
