import Foundation
import ParleyCore
import ParleyRecord

/// The worker daemon: takes jobs from the queue (DATA-DIR/parley.db),
/// runs `concurrency` of them at a time, records state and progress,
/// retries transient failures with exponential backoff up to the job's
/// attempt limit (bad input fails at once), and re-queues jobs a killed worker left running. Files dropped
/// into DATA-DIR/spool/incoming/ become jobs.
public final class Worker: @unchecked Sendable {
    public struct Config: Sendable {
        public var dataDir = "./var"
        public var concurrency = 1
        public var maxAttempts = 3
        /// First retry delay in seconds; doubles with each attempt.
        public var retryBase = 2.0
        /// Seconds between queue and spool polls when idle.
        public var pollInterval = 0.5
        /// Exit once nothing is queued, running or waiting in the spool.
        public var once = false
        /// Options for jobs made from spool files (input/output are filled in).
        public var spoolOptions = TranscodeOptions(input: "", output: "")
        /// What `record-export` jobs write besides the per-participant files and the mix (`--record-grid`).
        public var recordExport = ExportOptions()
        public init() {}
    }

    public let config: Config
    public let queue: any JobQueue
    /// `config.dataDir`, standardized: DATA-DIR/hls and the spool are under it.
    public let dataDir: String
    let log: Logger
    private let cond = NSCondition()
    private var stopping = false
    private var running = 0
    private var dataDirLock: DirectoryLock?
    private var spoolSeen: [String: (size: Int, mtime: Double)] = [:]

    public var hlsDir: String { dataDir + "/hls" }
    /// Where `record-export` jobs find their recordings (what `parley serve` records into).
    public var recordingsDir: String { dataDir + "/recordings" }
    public var incomingDir: String { dataDir + "/spool/incoming" }
    public var acceptedDir: String { dataDir + "/spool/accepted" }

    /// Takes jobs from `queue`, by default the `SQLiteJobQueue` in `config.dataDir`.
    public init(config: Config, queue: (any JobQueue)? = nil, log: Logger = Logger(label: "worker")) throws {
        self.config = config
        self.log = log
        dataDir = URL(fileURLWithPath: config.dataDir).standardizedFileURL.path
        self.queue = try queue ?? SQLiteJobQueue.open(dataDir: dataDir)
        let fm = FileManager.default
        for d in [hlsDir, incomingDir, acceptedDir] { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) }
    }

    /// Takes the data directory's worker lock (one worker per data dir, so
    /// "running" in the table means "was running when a worker died").
    func lock() throws {
        do { dataDirLock = try DirectoryLock(directory: dataDir, name: "worker.lock", what: "worker") } catch {
            throw TranscodeError.failed("\(error)")
        }
    }

    /// Asks the worker to stop: running jobs are cancelled and re-queued.
    public func stop() {
        cond.lock(); stopping = true; cond.broadcast(); cond.unlock()
    }

    var isStopping: Bool { cond.lock(); defer { cond.unlock() }; return stopping }

    /// Runs until `stop()` (or, with `once`, until there is nothing left to do).
    public func run(ready: (() -> Void)? = nil) throws {
        try lock()
        let requeued = try queue.requeueInterrupted()
        if requeued > 0 { log.warn("re-queued jobs left running by a previous worker", ["count": .int(requeued)]) }
        removePartials()
        log.info("worker started", ["data_dir": .string(dataDir), "concurrency": .int(config.concurrency)])
        ready?()
        var threads: [Thread] = []
        let done = DispatchGroup()
        for i in 0..<max(1, config.concurrency) {
            done.enter()
            let t = Thread { [self] in
                self.runnerLoop()
                done.leave()
            }
            t.name = "worker-\(i)"
            threads.append(t)
            t.start()
        }
        while !isStopping {
            do { try scanSpool() } catch { log.error("spool scan failed", ["error": .string("\(error)")]) }
            if config.once, try isIdle() { stop(); break }
            cond.lock()
            if !stopping { _ = cond.wait(until: Date(timeIntervalSinceNow: config.pollInterval)) }
            cond.unlock()
        }
        done.wait()
        log.info("worker stopped")
    }

    private func isIdle() throws -> Bool {
        cond.lock(); let busy = running; cond.unlock()
        guard busy == 0, spoolSeen.isEmpty else { return false }
        let incoming = (try? FileManager.default.contentsOfDirectory(atPath: incomingDir).filter { !$0.hasPrefix(".") }) ?? []
        let queued = try queue.list(state: .queued, limit: 1)
        let active = try queue.list(state: .running, limit: 1)
        return incoming.isEmpty && queued.isEmpty && active.isEmpty
    }

    /// A killed transcode leaves its temporary directory behind; nothing
    /// else can be using it while we hold the lock.
    private func removePartials() {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: hlsDir)) ?? [] where name.hasPrefix(".") && (name.contains(".partial-") || name.contains(".old-")) {
            try? fm.removeItem(atPath: hlsDir + "/" + name)
        }
    }

    /// Spool files become jobs once their size and mtime held still for one
    /// poll (a writer may still be copying them in).
    func scanSpool() throws {
        let fm = FileManager.default
        var seen: [String: (size: Int, mtime: Double)] = [:]
        for name in try fm.contentsOfDirectory(atPath: incomingDir).sorted() where !name.hasPrefix(".") {
            let path = incomingDir + "/" + name
            guard let attrs = try? fm.attributesOfItem(atPath: path), attrs[.type] as? FileAttributeType == .typeRegular else { continue }
            let size = (attrs[.size] as? NSNumber)?.intValue ?? 0
            let mtime = (attrs[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            if let prev = spoolSeen[name], prev.size == size, prev.mtime == mtime {
                let accepted = acceptedDir + "/\(Int(Date().timeIntervalSince1970 * 1000))-\(name)"
                guard rename(path, accepted) == 0 else { continue }
                var o = config.spoolOptions
                o.output = ""
                let id = try queue.enqueue(input: accepted, options: o, maxAttempts: config.maxAttempts)
                log.info("spool file queued", ["file": .string(name), "job": .int(Int(id))])
                cond.lock(); cond.broadcast(); cond.unlock()
            } else {
                seen[name] = (size, mtime)
            }
        }
        spoolSeen = seen
    }

    private func runnerLoop() {
        while !isStopping {
            let job: Job?
            do { job = try queue.claim() } catch {
                log.error("claim failed", ["error": .string("\(error)")])
                job = nil
            }
            guard let job else {
                cond.lock()
                if !stopping { _ = cond.wait(until: Date(timeIntervalSinceNow: config.pollInterval)) }
                cond.unlock()
                continue
            }
            cond.lock(); running += 1; cond.unlock()
            execute(job)
            cond.lock(); running -= 1; cond.broadcast(); cond.unlock()
        }
    }

    /// A `record-export` job: DATA-DIR/recordings/ID exported in place. The
    /// job names a recording id, never a path: an id that is not a plain
    /// name fails at once, as does a directory that is not a recording.
    /// An export is not interrupted by `stop()` (it streams and ends).
    private func exportRecording(_ job: Job) {
        let id = job.input
        func failed(_ why: String, permanent: Bool) {
            let state = (try? queue.fail(job.id, error: permanent ? "permanent: \(why)" : why, retry: !permanent, retryBase: config.retryBase)) ?? .failed
            log.warn(state == .queued ? "job failed, will retry" : "job failed, not retried",
                     ["job": .int(Int(job.id)), "recording": .string(id), "error": .string(why)])
        }
        guard !id.isEmpty, RecordingIndex.safeName(id) == id else { return failed("not a recording id", permanent: true) }
        let dir = recordingsDir + "/" + id
        log.info("job started", ["job": .int(Int(job.id)), "kind": .string(job.kind.rawValue), "recording": .string(id), "attempt": .int(job.attempts)])
        let started = Date()
        do {
            let r = try Exporter.export(directory: dir, options: config.recordExport)
            try queue.finish(job.id, output: dir)
            log.info("job done", ["job": .int(Int(job.id)), "recording": .string(id), "files": .int(r.files.count),
                                  "seconds": .double((Date().timeIntervalSince(started) * 10).rounded() / 10)])
        } catch RecordError.system(let function, _, let e) where function == "open" && e == ENOENT {
            failed("no such recording", permanent: true)
        } catch let e as RecordError {
            if case .badRecording = e { failed("\(e)", permanent: true) } else { failed("\(e)", permanent: false) }
        } catch {
            failed("\(error)", permanent: false)
        }
    }

    /// A file-system-safe asset name: the input's base name and the job id.
    static func assetName(input: String, id: Int64) -> String {
        var base = ((input as NSString).lastPathComponent as NSString).deletingPathExtension
        // Spool files carry an arrival-time prefix (`1795473779702-clip`): drop it.
        if let dash = base.firstIndex(of: "-"), base[..<dash].allSatisfy(\.isNumber), base.index(after: dash) < base.endIndex {
            base = String(base[base.index(after: dash)...])
        }
        let safe = String(base.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(64))
        return "\(safe.isEmpty || safe.hasPrefix(".") ? "asset" : safe)-\(id)"
    }

    private func execute(_ job: Job) {
        if job.kind == .recordExport { return exportRecording(job) }
        var o = job.options
        o.input = job.input
        if o.output.isEmpty { o.output = job.output ?? hlsDir + "/" + Worker.assetName(input: job.input, id: job.id) }
        // The transcode replaces its output directory (removing what was
        // there): whoever wrote the job row, never anywhere but DATA-DIR/hls.
        guard HLSFiles.isJobOutput(o.output, hlsRoot: hlsDir) else {
            let why = "output \(o.output) is not a directory directly under \(hlsDir); refused"
            _ = try? queue.fail(job.id, error: why, retry: false)
            log.warn("job refused", ["job": .int(Int(job.id)), "error": .string(why)])
            return
        }
        try? queue.setOutput(job.id, o.output)
        log.info("job started", ["job": .int(Int(job.id)), "input": .string(job.input), "attempt": .int(job.attempts)])
        let t = Transcoder(options: o)
        var lastWrite = Date.distantPast
        t.onProgress = { [queue, log] p in
            guard Date().timeIntervalSince(lastWrite) >= 0.5 else { return }
            lastWrite = Date()
            do { try queue.setProgress(job.id, p.fraction) } catch { log.warn("progress update failed", ["error": .string("\(error)")]) }
        }
        t.shouldCancel = { [self] in self.isStopping }
        do {
            let r = try t.run()
            try queue.finish(job.id, output: r.output)
            if r.toneMapped {
                log.info("HDR source tone-mapped to SDR", ["job": .int(Int(job.id)), "source_video_range": .string(r.sourceVideoRange.rawValue),
                                                           "video_range": .string(VideoRange.sdr.rawValue)])
            }
            log.info("job done", ["job": .int(Int(job.id)), "output": .string(r.output),
                                  "seconds": .double((r.elapsed * 10).rounded() / 10)])
        } catch TranscodeError.cancelled {
            try? queue.release(job.id)
            log.info("job re-queued on shutdown", ["job": .int(Int(job.id))])
        } catch {
            // Bad input and bad options fail at once; anything else (I/O,
            // full disk, an encoder that failed) is retried with backoff.
            let permanent = (error as? TranscodeError)?.isPermanent ?? false
            let reason = permanent ? "permanent: \(error)" : "\(error)"
            let state = (try? queue.fail(job.id, error: reason, retry: !permanent, retryBase: config.retryBase)) ?? .failed
            log.warn(state == .queued ? "job failed, will retry" : permanent ? "job failed, not retried" : "job failed",
                     ["job": .int(Int(job.id)), "error": .string(reason), "attempt": .int(job.attempts)])
        }
    }
}
