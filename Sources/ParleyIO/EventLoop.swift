import Glibc
import CLinux
import Synchronization
import ParleyCore

/// Readiness reported by epoll for a registered descriptor.
public struct IOEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Data to read (`EPOLLIN`).
    public static let readable = IOEvents(rawValue: UInt32(EPOLLIN.rawValue))
    /// Room to write (`EPOLLOUT`).
    public static let writable = IOEvents(rawValue: UInt32(EPOLLOUT.rawValue))
    /// Peer shut down its writing half (`EPOLLRDHUP`).
    public static let readHangup = IOEvents(rawValue: UInt32(EPOLLRDHUP.rawValue))
    /// Both directions hung up (`EPOLLHUP`, always reported).
    public static let hangup = IOEvents(rawValue: UInt32(EPOLLHUP.rawValue))
    /// Error pending on the socket (`EPOLLERR`, always reported).
    public static let error = IOEvents(rawValue: UInt32(EPOLLERR.rawValue))
}

/// Something registered on an ``EventLoop``: receives readiness for one fd.
///
/// All methods are called on the loop's thread. The handler owns its fd; it
/// must call ``EventLoop/deregister(_:)`` before closing it.
public protocol EventLoopIOHandler: AnyObject {
    /// The fd is ready for `events` (a subset of the interest plus hangup/error).
    func handleIO(_ events: IOEvents)
    /// The loop is shutting down. With `graceful == true` the handler should
    /// finish what it owes (flush writes) and deregister soon; the loop keeps
    /// running until every registration is gone. With `graceful == false` the
    /// grace period is over and the handler must deregister and close now.
    func loopIsShuttingDown(graceful: Bool)
}

/// A live registration of an fd on a loop. The `id` makes events for a
/// closed-and-reused fd number distinguishable from events for the new one.
public struct IORegistration: Hashable, Sendable {
    public let id: UInt32
    public let fd: Int32
    @inline(__always) var epollData: UInt64 { UInt64(id) << 32 | UInt64(UInt32(bitPattern: fd)) }
}

/// A scheduled timer; pass it to ``EventLoop/cancelTimer(_:)``.
public struct TimerHandle: Hashable, Sendable {
    public let id: UInt64
}

/// One thread, one epoll set.
///
/// Everything registered on a loop (sockets, timers, handlers) is touched only
/// on the loop's thread: methods documented "loop only" assert this with
/// ``assertInLoop()``. The one way in from another thread is ``execute(_:)``
/// (an MPSC queue drained by the loop after an eventfd wake-up);
/// ``shutdownGracefully()`` and ``submit(_:)`` are built on it.
///
/// Per iteration the loop waits in `epoll_wait` (timeout = the earliest timer,
/// rounded up to whole milliseconds), dispatches I/O events, runs due timers,
/// then runs posted tasks if the eventfd fired.
public final class EventLoop: @unchecked Sendable, CustomStringConvertible {
    private struct Entry {
        var id: UInt32 = 0
        var handler: (any EventLoopIOHandler)? = nil
    }

    private struct TimerEntry {
        var deadline: UInt64
        var seq: UInt64
        var id: UInt64
        @inline(__always) func before(_ o: TimerEntry) -> Bool {
            deadline < o.deadline || (deadline == o.deadline && seq < o.seq)
        }
    }

    private struct TimerRecord {
        var body: () -> Void
        var interval: UInt64 // 0: one-shot
    }

    enum State: Int { case idle, running, shuttingDown, stopped }

    /// Index of the loop inside its group (0 for a standalone loop); used in
    /// thread names and logs.
    public let index: Int

    private let epfd: Int32
    private let wakeFD: Int32
    private var entries: [Entry] = []
    private var nextRegistrationID: UInt32 = 1
    /// Live registrations (excluding the internal eventfd).
    public private(set) var registrationCount = 0

    private struct TaskQueue {
        var tasks = Handoff<@Sendable () -> Void>()
        var stopped = false
    }
    private let queue = Mutex<TaskQueue>(TaskQueue())
    private var draining: [@Sendable () -> Void] = []
    private var iterationEnd: [() -> Void] = []
    private var endingIteration: [() -> Void] = []
    /// `execute` calls writing the eventfd right now (after the queue's
    /// lock): the loop closes it only once none is left.
    private let wakeWriters = Atomic<Int>(0)

    private var heap: [TimerEntry] = []
    private var timers: [UInt64: TimerRecord] = [:]
    private var nextTimerID: UInt64 = 1
    private var timerSeq: UInt64 = 0

    private let threadID = Atomic<UInt>(0)
    private let stateValue = Atomic<Int>(State.idle.rawValue)
    private var shutdownDeadline: UInt64 = 0
    private var forcedShutdown = false
    private let maxEvents: Int32 = 256
    private let eventBuffer: UnsafeMutableRawPointer

    /// Grace period for ``shutdownGracefully()``: after it, remaining handlers
    /// are told to close immediately.
    public var shutdownGracePeriod: Duration = .seconds(10)

    /// A 64 KiB scratch buffer for reads on this loop. Valid only on the loop
    /// thread and only until the handler that was given a view of it returns.
    public let readBuffer: UnsafeMutableRawBufferPointer
    /// The loop's `TLS13Cipher` (see `tls13Cipher`), made on first use.
    var tls13CipherStorage: AnyObject?

    let logger: Logger

    /// Creates a loop (epoll set + eventfd). It does nothing until ``run()``
    /// is called on some thread; usually an ``EventLoopGroup`` does that.
    public init(index: Int = 0, logger: Logger = Logger(label: "parley.io")) throws(SystemError) {
        self.index = index
        self.logger = logger
        epfd = try syscall("epoll_create1") { parley_epoll_create() }
        do {
            wakeFD = try syscall("eventfd") { parley_eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
        } catch {
            closeFD(epfd)
            throw error
        }
        eventBuffer = UnsafeMutableRawPointer.allocate(byteCount: Int(maxEvents) * parley_epoll_event_size(), alignment: 16)
        readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        // id 0 marks the wake-up eventfd. Edge-triggered: every write is one
        // event, so the loop never reads it (one syscall less per wake-up). Its
        // counter grows by at most one per wake-up; it would take 2^64 of them to fill.
        _ = try? syscall("epoll_ctl") {
            parley_epoll_ctl(epfd, EPOLL_CTL_ADD, wakeFD, UInt32(EPOLLIN.rawValue) | UInt32(EPOLLET.rawValue), UInt64(UInt32(bitPattern: wakeFD)))
        }
    }

    deinit {
        if stateValue.load(ordering: .acquiring) != State.stopped.rawValue {
            closeFD(epfd)
            closeFD(wakeFD)
        }
        eventBuffer.deallocate()
        readBuffer.deallocate()
    }

    public var description: String { "EventLoop(\(index))" }

    // MARK: Thread identity

    /// True when called on this loop's thread.
    @inline(__always) public var inEventLoop: Bool {
        let t = threadID.load(ordering: .relaxed)
        return t != 0 && t == UInt(pthread_self())
    }

    /// Traps (in debug builds) unless called on this loop's thread.
    @inline(__always) public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inEventLoop, "not on \(self)'s thread", file: file, line: line)
    }

    /// Traps (always) unless called on this loop's thread.
    @inline(__always) public func preconditionInLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inEventLoop, "not on \(self)'s thread", file: file, line: line)
    }

    var state: State { State(rawValue: stateValue.load(ordering: .acquiring))! }

    /// True once ``shutdownGracefully()`` was processed (or the loop stopped).
    public var isShuttingDown: Bool { state.rawValue >= State.shuttingDown.rawValue }

    // MARK: Cross-thread entry point

    /// Runs `task` on the loop's thread, soon. **The only method that may be
    /// called from any thread** (the others are loop-only unless noted). Tasks
    /// run in the order they were posted from one thread. Multiple producers,
    /// one consumer: a ``Handoff`` under a mutex, swapped out by the loop, plus
    /// an eventfd write only when no wake-up is already pending. Returns false
    /// (and drops the task) once the loop has stopped.
    ///
    /// The eventfd is written after the lock is released: the loop it wakes
    /// (on another core) takes the same lock at once to drain, and would
    /// otherwise spin on it for the length of this thread's syscall.
    @discardableResult
    public func execute(_ task: @escaping @Sendable () -> Void) -> Bool {
        let posted = queue.withLock { q -> (queued: Bool, wake: Bool) in
            if q.stopped { return (false, false) }
            guard q.tasks.add(task) else { return (true, false) }
            // Counted under the lock: once the loop has set `stopped`, it waits for these before closing the eventfd.
            wakeWriters.add(1, ordering: .relaxed)
            return (true, true)
        }
        if posted.wake {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
            wakeWriters.subtract(1, ordering: .releasing)
        }
        return posted.queued
    }

    /// Runs `body` on the loop and blocks the calling thread until it returns.
    /// For setup code and tests. On the loop's own thread it runs `body`
    /// inline. Throws `SystemError(errno: ESHUTDOWN)` if the loop has stopped.
    public func submit<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        if inEventLoop { return try body() }
        let box = SubmitBox<T>()
        let queued = execute {
            let r = Result { try body() }
            box.complete(r)
        }
        guard queued else { throw SystemError(errno: ESHUTDOWN, function: "EventLoop.submit") }
        return try box.wait().get()
    }

    private func drainTasks() {
        queue.withLock { $0.tasks.take(into: &draining) }
        for task in draining { task() }
        draining.removeAll(keepingCapacity: true)
    }

    /// The loop whose thread this is (in ``run()``), if any. Any thread.
    public static var current: EventLoop? {
        pthread_getspecific(currentLoopKey).map { Unmanaged<EventLoop>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Runs `body` once this iteration's I/O events, timers and tasks are
    /// done, before the loop waits again. Loop only.
    public func atIterationEnd(_ body: @escaping () -> Void) {
        assertInLoop()
        iterationEnd.append(body)
    }

    private func runIterationEnd() {
        while !iterationEnd.isEmpty {
            swap(&iterationEnd, &endingIteration)
            for body in endingIteration { body() }
            endingIteration.removeAll(keepingCapacity: true)
        }
    }

    // MARK: Registration (loop only)

    /// Adds `fd` to the epoll set with `interest` (level-triggered). Loop only.
    public func register(fd: Int32, interest: IOEvents, handler: any EventLoopIOHandler) throws(SystemError) -> IORegistration {
        preconditionInLoop()
        precondition(fd >= 0)
        let id = nextRegistrationID
        nextRegistrationID = nextRegistrationID == UInt32.max ? 1 : nextRegistrationID + 1
        let reg = IORegistration(id: id, fd: fd)
        try syscall("epoll_ctl") { parley_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, interest.rawValue, reg.epollData) }
        if Int(fd) >= entries.count {
            entries.append(contentsOf: repeatElement(Entry(), count: max(Int(fd) + 1 - entries.count, entries.count)))
        }
        entries[Int(fd)] = Entry(id: id, handler: handler)
        registrationCount += 1
        return reg
    }

    /// Changes the interest set of a registration. Loop only.
    public func modify(_ reg: IORegistration, interest: IOEvents) throws(SystemError) {
        assertInLoop()
        try syscall("epoll_ctl") { parley_epoll_ctl(epfd, EPOLL_CTL_MOD, reg.fd, interest.rawValue, reg.epollData) }
    }

    /// Removes a registration from the epoll set (before the caller closes
    /// the fd). Pending events for it are ignored. Loop only.
    public func deregister(_ reg: IORegistration) {
        assertInLoop()
        guard Int(reg.fd) < entries.count, entries[Int(reg.fd)].id == reg.id else { return }
        _ = parley_epoll_ctl(epfd, EPOLL_CTL_DEL, reg.fd, 0, 0)
        entries[Int(reg.fd)] = Entry()
        registrationCount -= 1
    }

    // MARK: Timers (loop only)

    /// Runs `body` once on the loop after `delay` (millisecond resolution,
    /// never early). Timers with the same deadline fire in scheduling order.
    /// Loop only; from elsewhere, wrap in ``execute(_:)``.
    @discardableResult
    public func scheduleTimer(after delay: Duration, _ body: @escaping () -> Void) -> TimerHandle {
        scheduleTimer(delay: delay, interval: 0, body)
    }

    /// Runs `body` every `interval` (first after `initialDelay`, default one
    /// interval) until cancelled, also from inside `body`. Loop only.
    @discardableResult
    public func scheduleRepeatingTimer(every interval: Duration, initialDelay: Duration? = nil,
                                       _ body: @escaping () -> Void) -> TimerHandle {
        let ns = UInt64(max(1_000_000, interval.nanosecondsClamped))
        return scheduleTimer(delay: initialDelay ?? interval, interval: ns, body)
    }

    /// Cancels a timer; a no-op if it already fired or was cancelled. Loop only.
    public func cancelTimer(_ handle: TimerHandle) {
        assertInLoop()
        timers[handle.id] = nil
    }

    /// Number of timers that are scheduled and not cancelled.
    public var scheduledTimerCount: Int { timers.count }

    private func scheduleTimer(delay: Duration, interval: UInt64, _ body: @escaping () -> Void) -> TimerHandle {
        preconditionInLoop()
        let id = nextTimerID
        nextTimerID += 1
        timers[id] = TimerRecord(body: body, interval: interval)
        let deadline = MonotonicTime.now().adding(delay).nanoseconds
        pushTimer(TimerEntry(deadline: deadline, seq: 0, id: id))
        return TimerHandle(id: id)
    }

    private func pushTimer(_ e: TimerEntry) {
        var e = e
        timerSeq += 1
        e.seq = timerSeq
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if heap[i].before(heap[p]) { heap.swapAt(i, p); i = p } else { break }
        }
    }

    private func popTimer() -> TimerEntry {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l].before(heap[m]) { m = l }
                if r < heap.count && heap[r].before(heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m); i = m
            }
        }
        return top
    }

    /// epoll_wait timeout in ms: -1 without timers, else until the earliest.
    private func nextTimeout() -> Int32 {
        while let top = heap.first, timers[top.id] == nil { _ = popTimer() } // drop cancelled
        guard let top = heap.first else { return -1 }
        let now = MonotonicTime.now().nanoseconds
        if top.deadline <= now { return 0 }
        let ms = (top.deadline - now + 999_999) / 1_000_000
        return Int32(min(ms, 3_600_000))
    }

    private func runDueTimers() {
        guard !heap.isEmpty else { return }
        let now = MonotonicTime.now().nanoseconds
        while let top = heap.first, top.deadline <= now {
            let e = popTimer()
            guard let rec = timers[e.id] else { continue }
            if rec.interval == 0 {
                timers[e.id] = nil
            } else {
                // Next slot after now (skip missed ticks instead of bursting).
                var next = e.deadline + rec.interval
                if next <= now { next = now + rec.interval }
                pushTimer(TimerEntry(deadline: next, seq: 0, id: e.id))
            }
            rec.body()
        }
    }

    // MARK: Running

    /// Runs the loop on the calling thread until it has shut down. Called by
    /// ``EventLoopGroup``; call it yourself only for a loop you created.
    public func run() {
        threadID.store(UInt(pthread_self()), ordering: .releasing)
        pthread_setspecific(currentLoopKey, Unmanaged.passUnretained(self).toOpaque())
        stateValue.store(State.running.rawValue, ordering: .releasing)
        while true {
            var timeout = nextTimeout()
            let shuttingDown = state == .shuttingDown
            if shuttingDown {
                if registrationCount == 0 { break }
                let now = MonotonicTime.now().nanoseconds
                if now >= shutdownDeadline {
                    if !forcedShutdown {
                        forcedShutdown = true
                        logger.warn("event loop grace period over; closing remaining handlers", ["loop": .int(index), "registrations": .int(registrationCount)])
                        for h in liveHandlers() { h.loopIsShuttingDown(graceful: false) }
                        continue
                    }
                    // Handlers that ignore a forced close cannot keep us alive.
                    break
                }
                let left = Int32(min((shutdownDeadline - now) / 1_000_000 + 1, 1000))
                timeout = timeout < 0 ? left : min(timeout, left)
            }
            let n = parley_epoll_wait(epfd, eventBuffer.assumingMemoryBound(to: epoll_event.self), maxEvents, timeout)
            if n < 0 {
                let err = Glibc.errno
                if err == EINTR { continue }
                fatalError("epoll_wait failed: \(SystemError(errno: err, function: "epoll_wait"))")
            }
            var wake = false
            let buf = eventBuffer.assumingMemoryBound(to: epoll_event.self)
            for i in 0..<n {
                let data = parley_epoll_event_data(buf, i)
                let ev = IOEvents(rawValue: parley_epoll_event_events(buf, i))
                let id = UInt32(truncatingIfNeeded: data >> 32)
                if id == 0 { wake = true; continue }
                let fd = Int(Int32(bitPattern: UInt32(truncatingIfNeeded: data)))
                guard fd < entries.count, entries[fd].id == id, let h = entries[fd].handler else { continue } // stale
                h.handleIO(ev)
            }
            runDueTimers()
            if wake { drainTasks() }
            runIterationEnd()
        }
        // Run what was posted before we stopped (later posts are refused),
        // then close our descriptors.
        drainTasks()
        var late: [@Sendable () -> Void] = []
        queue.withLock { q in
            q.stopped = true
            q.tasks.take(into: &late)
        }
        for task in late { task() }
        runIterationEnd()
        stateValue.store(State.stopped.rawValue, ordering: .releasing)
        heap.removeAll()
        timers.removeAll()
        closeFD(epfd)
        // No new writer can start (`stopped`); let those under way finish.
        while wakeWriters.load(ordering: .acquiring) > 0 { sched_yield() }
        closeFD(wakeFD)
        // pthread_t values are reused once this thread is joined: a later
        // thread (a dispatch worker, say) must not pass for this loop.
        threadID.store(0, ordering: .releasing)
        pthread_setspecific(currentLoopKey, nil)
    }

    private func liveHandlers() -> [any EventLoopIOHandler] {
        entries.compactMap { $0.handler }
    }

    /// Asks the loop to shut down: every registered handler gets
    /// `loopIsShuttingDown(graceful: true)` (connections flush and close), and
    /// ``run()`` returns once no registration is left or the grace period
    /// has passed. Any thread.
    public func shutdownGracefully() {
        execute { [self] in
            guard state == .running else { return }
            stateValue.store(State.shuttingDown.rawValue, ordering: .releasing)
            shutdownDeadline = MonotonicTime.now().adding(shutdownGracePeriod).nanoseconds
            for h in liveHandlers() { h.loopIsShuttingDown(graceful: true) }
        }
    }
}

/// `EventLoop.current`: the loop running on this thread.
private let currentLoopKey: pthread_key_t = {
    var key = pthread_key_t()
    precondition(pthread_key_create(&key, nil) == 0)
    return key
}()

/// Blocking hand-off for ``EventLoop/submit(_:)``.
final class SubmitBox<T>: @unchecked Sendable {
    private let cond = ConditionLock()
    private var result: Result<T, any Error>?

    func complete(_ r: Result<T, any Error>) {
        cond.lock()
        result = r
        cond.broadcast()
        cond.unlock()
    }

    func wait() -> Result<T, any Error> {
        cond.lock()
        while result == nil { cond.wait() }
        let r = result!
        cond.unlock()
        return r
    }
}

/// A pthread mutex + condition variable at stable addresses.
final class ConditionLock: @unchecked Sendable {
    private let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let c = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    init() {
        m.initialize(to: pthread_mutex_t()); c.initialize(to: pthread_cond_t())
        pthread_mutex_init(m, nil); pthread_cond_init(c, nil)
    }
    deinit {
        pthread_mutex_destroy(m); pthread_cond_destroy(c)
        m.deallocate(); c.deallocate()
    }
    func lock() { pthread_mutex_lock(m) }
    func unlock() { pthread_mutex_unlock(m) }
    func wait() { pthread_cond_wait(c, m) }
    func signal() { pthread_cond_signal(c) }
    func broadcast() { pthread_cond_broadcast(c) }
}
