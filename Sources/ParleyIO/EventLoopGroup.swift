import Glibc
import CLinux
import Synchronization
import ParleyCore

/// N event loops, one thread each (default: one per online core).
///
/// ```swift
/// let group = try EventLoopGroup(shutdownSignals: [SIGINT, SIGTERM])
/// let loop = group.next()                    // round robin
/// try loop.submit { try UDPSocket(...) }     // set up on the loop
/// let signal = group.waitForShutdownSignal() // blocks; loops flushed and joined
/// ```
///
/// With `shutdownSignals`, the signals are blocked in the creating thread
/// *before* the loop threads start (they inherit the mask), and a signalfd on
/// loop 0 turns the first of them into ``shutdownGracefully()``. Create the
/// group on the main thread before starting other threads so no thread is left
/// with the default disposition (which would kill the process). The creating
/// thread keeps the signals blocked afterwards.
public final class EventLoopGroup: @unchecked Sendable {
    /// The loops, index = ``EventLoop/index``.
    public let loops: [EventLoop]
    private var threads: [pthread_t] = []
    private let counter = Atomic<Int>(0)
    private let joined = Mutex<Bool>(false)
    private let signalReceived = Atomic<Int32>(0)

    /// Online cores (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
    public static var coreCount: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// Starts `numberOfThreads` loops, each on its own thread.
    ///
    /// - Parameters:
    ///   - shutdownSignals: signals (e.g. `[SIGINT, SIGTERM]`) that trigger a
    ///     graceful shutdown; empty for none.
    ///   - onSignal: called on loop 0 with the signal number just before the
    ///     shutdown starts (for logging).
    ///   - threadName: the threads are named `<threadName>-<index>` (at most
    ///     15 bytes in all, the kernel's limit).
    public init(numberOfThreads: Int = EventLoopGroup.coreCount, shutdownSignals: [Int32] = [],
                threadName: String = "parley-loop",
                logger: Logger = Logger(label: "parley.io"),
                onSignal: (@Sendable (Int32) -> Void)? = nil) throws {
        precondition(numberOfThreads > 0)
        var loops: [EventLoop] = []
        for i in 0..<numberOfThreads { loops.append(try EventLoop(index: i, logger: logger)) }
        self.loops = loops
        var signalFD: Int32 = -1
        if !shutdownSignals.isEmpty {
            signalFD = try shutdownSignals.withUnsafeBufferPointer { b throws(SystemError) in
                try syscall("signalfd") { parley_signalfd_for(b.baseAddress, Int32(b.count)) }
            }
        }
        for loop in loops {
            threads.append(startThread(named: "\(threadName)-\(loop.index)") { loop.run() })
        }
        if signalFD >= 0 {
            let fd = signalFD
            let first = loops[0]
            try first.submit { [self] in
                let h = SignalWatcher(fd: fd, loop: first) { [self] sig in
                    if signalReceived.compareExchange(expected: 0, desired: sig, ordering: .acquiringAndReleasing).exchanged {
                        onSignal?(sig)
                        shutdownGracefully()
                    }
                }
                try h.start()
            }
        }
    }

    /// The next loop, round robin. Any thread.
    public func next() -> EventLoop {
        loops[counter.wrappingAdd(1, ordering: .relaxed).oldValue % loops.count]
    }

    /// Asks every loop to shut down gracefully (see
    /// ``EventLoop/shutdownGracefully()``). Returns at once. Any thread.
    public func shutdownGracefully() {
        for l in loops { l.shutdownGracefully() }
    }

    /// Blocks until every loop has stopped and its thread is joined. Call from
    /// one thread that is not a loop thread.
    public func wait() {
        let ts = joined.withLock { done -> [pthread_t] in
            if done { return [] }
            done = true
            return threads
        }
        for t in ts { pthread_join(t, nil) }
    }

    /// Blocks until a shutdown signal arrives (or someone else calls
    /// ``shutdownGracefully()``), the loops have flushed and stopped, and their
    /// threads are joined. Returns the signal number, or nil if the shutdown
    /// was not caused by a signal. For `parley serve`'s main thread.
    @discardableResult
    public func waitForShutdownSignal() -> Int32? {
        wait()
        let s = signalReceived.load(ordering: .acquiring)
        return s == 0 ? nil : s
    }

    /// ``shutdownGracefully()`` then ``wait()``.
    public func syncShutdownGracefully() {
        shutdownGracefully()
        wait()
    }
}

/// Starts a named thread running `body` (loops and ``BlockingPool`` threads);
/// join it with `pthread_join`.
func startThread(named name: String, _ body: @escaping () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadStart {
        parley_set_thread_name(name)
        body()
    })
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { arg in
        let start = Unmanaged<ThreadStart>.fromOpaque(arg!).takeRetainedValue()
        start.body()
        return nil
    }, box.toOpaque())
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return t
}

private final class ThreadStart {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Reads a signalfd on a loop and reports each signal.
final class SignalWatcher: EventLoopIOHandler {
    let fd: Int32
    let loop: EventLoop
    let onSignal: (Int32) -> Void
    var registration: IORegistration?

    init(fd: Int32, loop: EventLoop, onSignal: @escaping (Int32) -> Void) {
        self.fd = fd; self.loop = loop; self.onSignal = onSignal
    }

    func start() throws {
        registration = try loop.register(fd: fd, interest: .readable, handler: self)
    }

    func handleIO(_ events: IOEvents) {
        var info = signalfd_siginfo()
        while true {
            let r = try? syscallMayBlock("read") { Glibc.read(fd, &info, MemoryLayout<signalfd_siginfo>.size) }
            guard case .processed(let n)? = r, n == MemoryLayout<signalfd_siginfo>.size else { return }
            onSignal(Int32(info.ssi_signo))
        }
    }

    func loopIsShuttingDown(graceful: Bool) {
        guard let reg = registration else { return }
        loop.deregister(reg)
        registration = nil
        closeFD(fd)
    }
}
