import CLinux
import CSQLite
import Foundation
import ParleyCore

/// A database's writer thread, with group commit.
///
/// Callers on any thread (an event loop, say) `submit` a write: a closure
/// that gets the writer's `Database` and a completion. The writer thread
/// takes every write waiting, up to `maxBatch`, runs them in one transaction,
/// commits once, and only then calls each completion: with the write's
/// result once the commit is on disk (as `Database.Options.synchronous`
/// defines it), with the error otherwise. Many writes share one commit and
/// one fsync, and no caller ever waits for the disk.
///
/// A write that throws is undone alone, its caller gets the error, and the
/// rest of the batch commits. The writes run without savepoints (a
/// savepoint per write cost two statements and a copy of every page the
/// write touched): a write that throws having changed nothing (no row
/// inserted, updated or deleted: `sqlite3_total_changes64` did not move)
/// needs no undoing; one that changed rows before it threw rolls the
/// transaction back, and the batch runs again with each write in its own
/// savepoint. So a write may run twice (its effects outside the database
/// must bear that), and it changes the database through INSERT, UPDATE and
/// DELETE only (schema changes belong in migrations).
///
/// The queue is bounded: `submit` on a full queue throws `queueFull` at once
/// (it never blocks), so a caller can refuse the request instead of
/// stalling its loop.
public final class StoreWriter: @unchecked Sendable {
    public struct Config: Sendable {
        /// The writer's connection; `.full` gives one fsync per group commit.
        public var options = Database.Options(synchronous: .full)
        /// Writes that may wait for the writer (beyond the batch it is running).
        public var capacity = 10_000
        /// At most this many writes in one transaction.
        public var maxBatch = 1_000
        /// How long the writer waits, after the first write of a batch
        /// arrived, for more to join it before it begins the transaction
        /// (unless `maxBatch` are waiting already): a commit costs the same
        /// page writes (and with `.full` the same fsync) for one write as for
        /// many, so under a steady stream of writes a short wait saves most
        /// of them, at the price of that much latency. It waits only when
        /// writes come that fast: when the batch's first write came less
        /// than `commitDelay` after the write before it. A write after a
        /// quiet spell commits at once. Zero: always at once.
        public var commitDelay: Duration = .zero
        /// Checkpoints (copying the WAL back into the database, with the
        /// fsyncs that takes) run every this long on a thread and connection
        /// of their own, so the writer never waits for them; the writer
        /// checkpoints itself only when the WAL passes `maxWALPages`
        /// (the checkpointer fell behind). nil: SQLite's own, on the writer,
        /// every 1,000 pages.
        public var checkpointInterval: Duration? = nil
        /// With `checkpointInterval`: the WAL's size (4 KiB pages) past which
        /// the writer checkpoints itself.
        public var maxWALPages = 16_384
        /// Counts `Statistics.reruns` too, for `/metrics`.
        public var reruns: Counter? = nil
        public init() {}
    }

    /// What the writer has done so far.
    public struct Statistics: Sendable, Equatable {
        /// Transactions committed.
        public var commits = 0
        /// Writes those transactions carried (including ones that threw and were undone).
        public var writes = 0
        /// Batches run again with a savepoint per write, because a write threw after changing rows.
        public var reruns = 0
        public init(commits: Int = 0, writes: Int = 0, reruns: Int = 0) {
            self.commits = commits
            self.writes = writes
            self.reruns = reruns
        }
    }

    /// A queued write and its completion.
    private final class Pending<T: Sendable>: PendingWrite {
        let write: @Sendable (Database) throws -> T
        let completion: @Sendable (Result<T, Error>) -> Void
        var result: Result<T, Error>?
        init(_ write: @escaping @Sendable (Database) throws -> T, _ completion: @escaping @Sendable (Result<T, Error>) -> Void) {
            self.write = write
            self.completion = completion
        }
        func perform(on db: Database, savepoint: Bool) -> Bool {
            if savepoint {
                do { result = .success(try db.savepoint { try write(db) }) } catch { result = .failure(error) }
                return true
            }
            let before = db.totalChanges
            do { result = .success(try write(db)) } catch {
                result = .failure(error)
                return db.totalChanges == before
            }
            return true
        }
        func finish(commitError: Error?) {
            if let commitError { completion(.failure(commitError)) } else if let result { completion(result) }
        }
    }

    public let path: String
    public let capacity: Int
    private let maxBatch: Int
    private let commitDelay: Duration
    private let delayNanoseconds: UInt64
    private let rerunCounter: Counter?
    private let database: Database
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [PendingWrite] = []
    /// When the last write was submitted, and how long before it the one
    /// before came, as of the queue's first write (uptime nanoseconds).
    private var lastArrival: UInt64 = 0
    private var gapBeforeFirst = UInt64.max
    private var closing = false
    private var stats = Statistics()
    private let stopped = DispatchSemaphore(value: 0)
    /// Set when the checkpointer runs: signal `stopCheckpoints`, then wait for `checkpointerStopped`.
    private let checkpointer: (stop: DispatchSemaphore, stopped: DispatchSemaphore)?

    /// Opens the database at `path` for writing, brings it up to `migrations`
    /// (on the calling thread, before returning), and starts the thread.
    public init(path: String, config: Config = Config(), migrations: [Migration] = []) throws {
        precondition(config.capacity > 0 && config.maxBatch > 0)
        self.path = path
        capacity = config.capacity
        maxBatch = config.maxBatch
        commitDelay = config.commitDelay
        let (delayS, delayAtto) = config.commitDelay.components
        delayNanoseconds = UInt64(delayS) * 1_000_000_000 + UInt64(delayAtto / 1_000_000_000)
        rerunCounter = config.reruns
        database = try Database(path: path, options: config.options)
        try database.migrate(migrations)
        if let interval = config.checkpointInterval {
            try database.execute("PRAGMA wal_autocheckpoint=\(config.maxWALPages)")
            nonisolated(unsafe) let db = try Database(path: path, options: config.options) // the checkpointer's alone
            let stop = DispatchSemaphore(value: 0), stopped = DispatchSemaphore(value: 0)
            checkpointer = (stop, stopped)
            let (s, atto) = interval.components
            let nanos = Int(s) * 1_000_000_000 + Int(atto / 1_000_000_000)
            let t = Thread {
                parley_set_thread_name("parley-ckpt")
                // PASSIVE: copies what no reader still needs and never blocks the writer.
                while stop.wait(timeout: .now() + .nanoseconds(nanos)) == .timedOut {
                    _ = try? db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                }
                stopped.signal()
            }
            t.start()
        } else {
            checkpointer = nil
        }
        // Named for the kernel (top, perf, /proc/PID/task/*/comm: at most 15 characters), which Thread.name never reaches.
        let thread = Thread { [self] in
            parley_set_thread_name("parley-store")
            self.run()
        }
        thread.start()
    }

    /// Queues `write` for the writer thread (it must not begin or end
    /// transactions itself). `completion` is called on the
    /// writer thread after the batch holding `write` committed (with what
    /// `write` returned, or what it threw) or failed to (with that error);
    /// hop to your own thread from there. Throws `queueFull` or `closed`
    /// without queueing anything. Safe to call from any thread.
    public func submit<T: Sendable>(_ write: @escaping @Sendable (Database) throws -> T,
                                    completion: @escaping @Sendable (Result<T, Error>) -> Void) throws {
        condition.lock()
        defer { condition.unlock() }
        guard !closing else { throw StoreError.closed }
        guard queue.count < capacity else { throw StoreError.queueFull(capacity: capacity) }
        if commitDelay > .zero {
            let now = DispatchTime.now().uptimeNanoseconds
            if queue.isEmpty { gapBeforeFirst = lastArrival == 0 ? UInt64.max : now - lastArrival }
            lastArrival = now
        }
        queue.append(Pending(write, completion))
        // The writer waits for a first write, or (during `commitDelay`) for a full batch.
        if queue.count == 1 || queue.count >= maxBatch { condition.signal() }
    }

    /// Writes waiting (not counting the batch being run).
    public var queued: Int { condition.lock(); defer { condition.unlock() }; return queue.count }

    public var statistics: Statistics { condition.lock(); defer { condition.unlock() }; return stats }

    /// Stops taking writes, lets the writer commit everything already
    /// queued (calling its completions), and waits for its thread to end.
    public func close() {
        condition.lock()
        let first = !closing
        closing = true
        condition.signal()
        condition.unlock()
        if first {
            stopped.wait()
            if let c = checkpointer { c.stop.signal(); c.stopped.wait() }
        }
    }

    private func run() {
        while let batch = nextBatch() {
            var commitError: Error?
            do {
                var rerun = false
                do { try commit(batch, savepoints: false) } catch StoreWriterRerun.needed {
                    rerun = true
                    rerunCounter?.inc()
                    try commit(batch, savepoints: true)
                }
                condition.lock(); stats.commits += 1; stats.writes += batch.count; stats.reruns += rerun ? 1 : 0; condition.unlock()
            } catch {
                commitError = error  // BEGIN or COMMIT failed: nothing in the batch is stored
            }
            for write in batch { write.finish(commitError: commitError) }
        }
        stopped.signal()
    }

    /// Runs `batch` in one transaction and commits it. Without savepoints, a
    /// write that throws after changing rows rolls it all back and throws
    /// `StoreWriterRerun.needed`.
    private func commit(_ batch: [PendingWrite], savepoints: Bool) throws {
        try database.transaction {
            for write in batch {
                let clean = write.perform(on: database, savepoint: savepoints)
                // A full disk or an I/O error rolls the whole transaction back.
                guard database.isInTransaction else {
                    throw StoreError.sqlite(code: SQLITE_ABORT, message: "the batch's transaction was rolled back", context: "group commit")
                }
                if !clean { throw StoreWriterRerun.needed }
            }
        }
    }

    /// Waits for writes; returns up to `maxBatch` of them, or nil once
    /// closing and drained.
    private func nextBatch() -> [PendingWrite]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if closing { return nil }
            condition.wait()
        }
        if commitDelay > .zero && gapBeforeFirst < delayNanoseconds {
            // Writes are coming faster than one per commitDelay: let a few more join this commit.
            let (s, atto) = commitDelay.components
            let until = Date(timeIntervalSinceNow: Double(s) + Double(atto) / 1e18)
            while queue.count < maxBatch && !closing && condition.wait(until: until) {}
        }
        let n = min(queue.count, maxBatch)
        let batch = Array(queue.prefix(n))
        queue.removeFirst(n)
        if !queue.isEmpty { gapBeforeFirst = 0 }  // more than a batch waiting: writes are coming fast
        return batch
    }
}

private enum StoreWriterRerun: Error { case needed }

private protocol PendingWrite: AnyObject {
    /// Runs the write inside the batch's transaction, in its own savepoint
    /// or not; false when it threw after changing rows (without a
    /// savepoint: the transaction must be rolled back).
    func perform(on db: Database, savepoint: Bool) -> Bool
    /// Calls the completion once the batch's commit is known.
    func finish(commitError: Error?)
}
