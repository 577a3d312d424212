import Foundation
import Synchronization
import ParleyCore
import ParleyIO
import ParleyProtocol
import ParleyRecord
import ParleyRelay
import ParleySignalling

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
/// the export runs on the blocking pool.
public final class RoomRecorder: RecordingBackend, Sendable {
    public let recorder: Recorder
    let relay: Relay
    let pool: BlockingPool
    /// The loop pool work reports back to.
    let loop: EventLoop
    /// Recordings that may run at once (`record-max-running`); one more is refused.
    let maxRunning: Int
    private let log: Logger
    private let exports: (ok: Counter, failed: Counter)

    private struct Running {
        var room: String
        var recording: Recording
    }
    private let running = Mutex<[String: Running]>([:])
    /// Told when a recording stops on its own (set once signalling exists).
    private let onEnded = Mutex<(@Sendable (_ room: String, _ id: String, _ reason: String) -> Void)?>(nil)

    /// - Parameters:
    ///   - directory: DATA-DIR/recordings.
    ///   - loop: where the pool's results come back to (any loop of the daemon).
    public init(directory: String, limits: RecordingLimits, maxRunning: Int = 50, relay: Relay, pool: BlockingPool, loop: EventLoop,
                metrics: MetricsRegistry = .shared, logger: Logger = Logger(label: "parley.record")) {
        self.maxRunning = maxRunning
        self.relay = relay
        self.pool = pool
        self.loop = loop
        self.log = logger
        exports = (metrics.counter("parley_record_exports_total", help: "Exports run when a recording stopped, by result",
                                   labels: [("result", "ok")]),
                   metrics.counter("parley_record_exports_total", help: "Exports run when a recording stopped, by result",
                                   labels: [("result", "failed")]))
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
        guard running.withLock({ $0.count }) < maxRunning else {
            completion(.failure(SignallingError(.internalError, "the server records \(maxRunning) rooms already (record-max-running)")))
            return
        }
        do {
            try pool.run(on: loop, { try recorder.start(id: id, room: room) }, then: { [self] result in
                switch result {
                case .failure(let e):
                    log.warn("recording could not start", ["room": .string(room), "error": .string("\(e)")])
                    completion(.failure(SignallingError(.internalError, "the recording could not start")))
                case .success(let recording):
                    running.withLock { $0[id] = Running(room: room, recording: recording) }
                    relay.setTap(room: room, recording.relayTap) { r in
                        if case .failure = r {
                            recording.stop()  // the call closed meanwhile
                            completion(.failure(SignallingError(.badRequest, "room \(room) has no call to record")))
                        } else {
                            completion(.success(id))
                        }
                    }
                }
            })
        } catch {
            completion(.failure(SignallingError(.internalError, "the server is busy; try again")))
        }
    }

    public func stop(room: String, id: String) {
        guard let r = running.withLock({ $0[id] }) else { return }
        relay.setTap(room: room, nil)
        r.recording.stop()
    }

    /// The recorder thread finished recording `id`: tell signalling, export on the pool.
    private func stopped(id: String, reason: StopReason) {
        guard let r = running.withLock({ $0.removeValue(forKey: id) }) else { return }
        log.info("recording finished", ["room": .string(r.room), "recording": .string(id), "reason": .string(reason.rawValue)])
        onEnded.withLock { $0 }?(r.room, id, reason.rawValue)
        let dir = recorder.directory + "/" + id
        do {
            try pool.run(on: loop, { try Exporter.export(directory: dir) }, then: { [self] result in
                switch result {
                case .success(let out):
                    exports.ok.inc()
                    log.info("recording exported", ["recording": .string(id), "files": .int(out.files.count)])
                case .failure(let e):
                    exports.failed.inc()
                    log.warn("recording export failed", ["recording": .string(id), "error": .string("\(e)")])
                }
            })
        } catch {
            exports.failed.inc()
            log.warn("recording not exported (the blocking pool refused; run parley record export)",
                     ["recording": .string(id), "error": .string("\(error)")])
        }
    }

    /// A fresh recording id: the room's name made safe, the UTC start time, 4 random hex digits.
    static func newID(room: String) -> String {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        let stamp = String(format: "%04d%02d%02d-%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
        return String(RecordingIndex.safeName(room).prefix(64)) + "-" + stamp + "-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }

    /// Stops every recording and finishes its files (the daemon's shutdown).
    public func shutdown() { recorder.shutdown() }
}

private final class StopBox: Sendable {
    let handler = Mutex<(@Sendable (String, StopReason) -> Void)?>(nil)
}

extension ServerConfig {
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
