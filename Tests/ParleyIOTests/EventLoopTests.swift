import XCTest
import Glibc
import Synchronization
import CLinux
@testable import ParleyIO

final class Recorder: @unchecked Sendable {
    var fired: [Int] = []
    var count = 0
}

final class EventLoopTests: XCTestCase {
    func testTasksPostedFromEightThreadsAllRun() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let rec = Recorder()
        let wrongThread = Atomic<Int>(0)
        let perThread = 5_000
        let threads = (0..<8).map { t in
            TestThread {
                for i in 0..<perThread {
                    loop.execute {
                        if !loop.inEventLoop { wrongThread.add(1, ordering: .relaxed) }
                        rec.count += 1
                        rec.fired.append(t * perThread + i)
                    }
                }
            }
        }
        threads.forEach { $0.join() }
        let (count, fired) = try loop.submit { (rec.count, rec.fired) }
        XCTAssertEqual(count, 8 * perThread)
        XCTAssertEqual(wrongThread.load(ordering: .relaxed), 0)
        // Per producer, FIFO order holds.
        for t in 0..<8 {
            let mine = fired.filter { $0 / perThread == t }
            XCTAssertEqual(mine, Array(t * perThread..<(t + 1) * perThread))
        }
    }

    func testTimersFireInDeadlineOrderAndCancelledOnesNever() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let rec = Recorder()
        let done = expectation(description: "sentinel")
        let delays = [50, 10, 30, 20, 40, 10, 5, 60]
        try loop.submit {
            var handles: [TimerHandle] = []
            for (i, d) in delays.enumerated() {
                handles.append(loop.scheduleTimer(after: .milliseconds(d)) { rec.fired.append(i) })
            }
            loop.cancelTimer(handles[2]) // 30 ms
            loop.cancelTimer(handles[7]) // 60 ms
            loop.scheduleTimer(after: .milliseconds(100)) { done.fulfill() }
        }
        wait(for: [done], timeout: 30)
        let fired = try loop.submit { rec.fired }
        // Sorted by delay; equal delays in scheduling order; 2 and 7 cancelled.
        XCTAssertEqual(fired, [6, 1, 5, 3, 4, 0])
        XCTAssertEqual(try loop.submit { loop.scheduledTimerCount }, 0)
    }

    func testTimerNeverFiresEarly() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let done = expectation(description: "fired")
        let elapsed = Shared<Duration>(.zero)
        try loop.submit {
            let start = MonotonicTime.now()
            loop.scheduleTimer(after: .milliseconds(25)) {
                elapsed.value = MonotonicTime.now().since(start)
                done.fulfill()
            }
        }
        wait(for: [done], timeout: 30)
        XCTAssertGreaterThanOrEqual(elapsed.value, .milliseconds(25))
    }

    func testRepeatingTimerCancelledFromItsOwnCallback() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let rec = Recorder()
        let done = expectation(description: "after")
        try loop.submit {
            var handle: TimerHandle?
            handle = loop.scheduleRepeatingTimer(every: .milliseconds(2)) {
                rec.count += 1
                if rec.count == 5 {
                    loop.cancelTimer(handle!)
                    // Due ten periods after the cancel: a tick that survived
                    // it would be due earlier, and so run first, however late
                    // the loop gets to them (timers run in deadline order).
                    loop.scheduleTimer(after: .milliseconds(20)) { done.fulfill() }
                }
            }
        }
        wait(for: [done], timeout: 30)
        XCTAssertEqual(try loop.submit { rec.count }, 5)
    }

    func testGroupRoundRobinAndShutdownJoinsThreadsWithoutLeakingFDs() throws {
        let before = openFDs()
        let group = try EventLoopGroup(numberOfThreads: 3)
        let seen = (0..<6).map { _ in group.next().index }
        XCTAssertEqual(seen, [0, 1, 2, 0, 1, 2])
        let onLoop = try group.loops[1].submit { group.loops[1].inEventLoop && !group.loops[0].inEventLoop }
        XCTAssertTrue(onLoop)
        XCTAssertFalse(group.loops[1].inEventLoop)
        group.syncShutdownGracefully()
        XCTAssertEqual(leakedFDs(since: before), [])
    }

    /// Two eventfds become readable before one epoll_wait. Handling the
    /// first closes the second and reuses its fd number for a new
    /// registration: the already-fetched event for the old fd must not reach
    /// the new handler.
    func testStaleEventForReusedFDIsIgnored() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let log = Shared<[String]>([])
        let reused = Shared(false)
        let handlers = Shared<[ReadyHandler]>([])
        try loop.submit {
            let a = parley_eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
            let b = parley_eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
            let second = ReadyHandler("second", fd: b, log: log)
            second.registration = try loop.register(fd: b, interest: .readable, handler: second)
            let first = ReadyHandler("first", fd: a, log: log) {
                loop.deregister(second.registration!)
                second.registration = nil
                close(b)
                let c = parley_eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) // lowest free number: b's
                reused.value = c == b
                let third = ReadyHandler("third", fd: c, log: log)
                third.registration = try? loop.register(fd: c, interest: .readable, handler: third)
                handlers.update { $0.append(third) }
            }
            first.registration = try loop.register(fd: a, interest: .readable, handler: first)
            handlers.update { $0 += [first, second] }
            var one: UInt64 = 1
            _ = write(a, &one, 8) // ready first, so first in epoll's ready list
            _ = write(b, &one, 8)
        }
        let settled = expectation(description: "a few iterations")
        _ = try loop.submit { loop.scheduleTimer(after: .milliseconds(20)) { settled.fulfill() } }
        wait(for: [settled], timeout: 30)
        let seen = log.value
        XCTAssertEqual(seen, ["first"])
        XCTAssertTrue(reused.value, "fd number was not reused; the stale path was not exercised")
        try loop.submit { for h in handlers.value { h.close(loop) } }
    }

    func testAtIterationEndRunsAfterTheIterationsTasks() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let rec = Recorder()
        try loop.submit {
            XCTAssertTrue(EventLoop.current === loop)
            loop.atIterationEnd { rec.fired.append(2) }
            rec.fired.append(1)
        }
        XCTAssertEqual(try loop.submit { rec.fired }, [1, 2])
        XCTAssertNil(EventLoop.current)
    }

    /// Items an event loop adds to an `Inbox` in one iteration reach the
    /// consumer as one batch: the post waits for the producer's iteration end.
    /// A thread that is no loop posts at once.
    func testInboxGetsOneLoopIterationsItemsInOneBatch() throws {
        let group = try EventLoopGroup(numberOfThreads: 2)
        defer { group.syncShutdownGracefully() }
        let producer = group.loops[0], consumer = group.loops[1]
        let batches = Mutex<[[Int]]>([])
        let arrived = DispatchSemaphore(value: 0)
        let inbox = Inbox<Int>(post: { consumer.execute($0) }, handle: { batch in
            XCTAssertTrue(consumer.inEventLoop)
            batches.withLock { $0.append(batch) }
            arrived.signal()
        })
        try producer.submit { for i in 0..<5 { inbox.add(i) } }
        XCTAssertEqual(arrived.wait(timeout: .now() + 30), .success)
        inbox.add(5)
        XCTAssertEqual(arrived.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(batches.withLock { $0 }, [[0, 1, 2, 3, 4], [5]])
    }

    func testExecuteAfterStopIsRefusedAndSubmitThrows() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        group.syncShutdownGracefully()
        XCTAssertFalse(loop.execute {})
        XCTAssertThrowsError(try loop.submit { 1 }) { e in
            XCTAssertEqual((e as? SystemError)?.errno, ESHUTDOWN)
        }
    }

    /// SIGTERM through the signalfd path. The signal is raised *on the loop
    /// thread*, which blocks it (inherited mask), so it stays pending for the
    /// signalfd and can never reach XCTest's default disposition.
    func testShutdownSignalStopsGroupAndClosesSockets() throws {
        let before = openFDs()
        let noted = Atomic<Int32>(0)
        let group = try EventLoopGroup(numberOfThreads: 2, shutdownSignals: [SIGINT, SIGTERM],
                                       onSignal: { noted.store($0, ordering: .relaxed) })
        let loop = group.loops[1]
        let udpOpen = Shared(false)
        let sock = try loop.submit { try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), handler: NullUDP()) }
        udpOpen.value = try loop.submit { sock.isOpen }
        XCTAssertTrue(udpOpen.value)
        // Hang guard only: if the signal path were broken, stop anyway and fail below.
        let guardThread = TestThread {
            var waited = 0
            while waited < 30_000 && noted.load(ordering: .relaxed) == 0 { usleep(10_000); waited += 10 }
            if noted.load(ordering: .relaxed) == 0 { group.shutdownGracefully() }
        }
        group.loops[0].execute { raise(SIGTERM) }
        let sig = group.waitForShutdownSignal()
        guardThread.join()
        XCTAssertEqual(sig, SIGTERM)
        XCTAssertEqual(noted.load(ordering: .relaxed), SIGTERM)
        XCTAssertFalse(sock.isOpen)
        XCTAssertEqual(leakedFDs(since: before), [])
        // The group blocked SIGINT/SIGTERM in this (XCTest's) thread; none is
        // pending (the signalfd consumed it), so restore the mask.
        var set = sigset_t()
        sigemptyset(&set); sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM)
        var pending = sigset_t()
        sigpending(&pending)
        XCTAssertEqual(sigismember(&pending, SIGTERM), 0)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}

final class NullUDP: UDPSocketHandler, @unchecked Sendable {
    func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {}
}

/// Records which fd became readable; `onRead` runs on the first event.
final class ReadyHandler: EventLoopIOHandler, @unchecked Sendable {
    let name: String, fd: Int32
    let log: Shared<[String]>
    var onRead: (() -> Void)?
    var registration: IORegistration?
    init(_ name: String, fd: Int32, log: Shared<[String]>, onRead: (() -> Void)? = nil) {
        self.name = name; self.fd = fd; self.log = log; self.onRead = onRead
    }
    func handleIO(_ events: IOEvents) {
        log.update { $0.append(name) }
        var v: UInt64 = 0
        _ = read(fd, &v, 8)
        let f = onRead
        onRead = nil
        f?()
    }
    func close(_ loop: EventLoop) {
        if let r = registration { loop.deregister(r); registration = nil; Glibc.close(fd) }
    }
    func loopIsShuttingDown(graceful: Bool) {}
}
