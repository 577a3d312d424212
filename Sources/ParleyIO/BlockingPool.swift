import Glibc
import ParleyCore

/// Threads for work that blocks (the disk, SQLite, libav): the one way to
/// leave an event loop for such work and come back to it.
///
/// ```swift
/// let pool = BlockingPool(threads: 4)
/// // on `loop`:
/// try pool.run(on: loop, { try store.save(upload) }) { result in
///     // back on `loop`, after the work, with its value or its error
/// }
/// ```
///
/// A fixed number of threads (`parley-pool-N`) take work in order from one
/// queue of at most ``queueCapacity`` waiting items. ``run(on:_:then:)`` never
/// blocks its caller: with the queue full it throws at once (`EAGAIN`), and
/// the caller answers "busy" (an HTTP route: 503) rather than wait. The result
/// goes back with ``EventLoop/execute(_:)``, so the continuation runs on the
/// caller's loop like everything else there.
///
/// ``shutdown()`` drains: it refuses new work (`ESHUTDOWN`), lets the threads
/// run everything already queued, hands each result to its loop, and joins
/// the threads. A result for a loop that has stopped by then is dropped:
/// nothing is left on that loop to continue.
public final class BlockingPool: @unchecked Sendable {
    /// Threads running work.
    public let threadCount: Int
    /// Items that may wait for a thread; one more is refused.
    public let queueCapacity: Int

    // Guarded by `cond` (a condition, not a plain lock: idle threads wait on it).
    private let cond = ConditionLock()
    private var waiting: [@Sendable () -> Void] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []

    private let refusals: Counter

    /// Starts `threads` threads.
    /// - Parameter metrics: where `parley_blocking_refused_total` counts refusals.
    public init(threads: Int, queueCapacity: Int = 256, metrics: MetricsRegistry = .shared) {
        precondition(threads > 0 && queueCapacity > 0)
        threadCount = threads
        self.queueCapacity = queueCapacity
        refusals = metrics.counter("parley_blocking_refused_total",
                                   help: "Blocking work (disk, SQLite) refused because the blocking pool's queue was full")
        let started = (0..<threads).map { i in startThread(named: "parley-pool-\(i)") { [self] in serve() } }
        cond.lock()
        self.threads = started
        cond.unlock()
    }

    /// Runs `work` on a pool thread, then `then` with its result on `loop`.
    /// Any thread; never blocks. Throws `SystemError` `EAGAIN` when
    /// ``queueCapacity`` items already wait, `ESHUTDOWN` after ``shutdown()``;
    /// `work` and `then` are not run then.
    public func run<T: Sendable>(on loop: EventLoop, _ work: @escaping @Sendable () throws -> T,
                                 then: @escaping @Sendable (Result<T, any Error>) -> Void) throws(SystemError) {
        let item: @Sendable () -> Void = {
            let result = Result { try work() }
            loop.execute { then(result) }
        }
        cond.lock(); defer { cond.unlock() }
        if stopping { throw SystemError(errno: ESHUTDOWN, function: "BlockingPool.run") }
        guard waiting.count - head < queueCapacity else {
            refusals.inc()
            throw SystemError(errno: EAGAIN, function: "BlockingPool.run")
        }
        waiting.append(item)
        cond.signal()
    }

    /// Items waiting for a thread (not counting those running).
    public var queuedCount: Int {
        cond.lock(); defer { cond.unlock() }
        return waiting.count - head
    }

    /// Refuses new work, runs what is queued, and returns once every thread
    /// has finished and been joined. Call it from a thread that is not one of
    /// the pool's; a second call returns at once.
    public func shutdown() {
        cond.lock()
        stopping = true
        let joining = threads
        threads = []
        cond.broadcast()
        cond.unlock()
        for t in joining { pthread_join(t, nil) }
    }

    /// A pool thread: takes items in order until shut down and drained.
    private func serve() {
        while true {
            cond.lock()
            while head == waiting.count && !stopping { cond.wait() }
            if head == waiting.count {
                cond.unlock()
                return
            }
            let item = waiting[head]
            head += 1
            if head == waiting.count {
                waiting.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64 {
                waiting.removeFirst(head) // a queue that never empties
                head = 0
            }
            cond.unlock()
            item()
        }
    }
}
