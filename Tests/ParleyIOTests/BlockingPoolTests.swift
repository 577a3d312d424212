import XCTest
import Foundation
import Synchronization
import ParleyCore
import ParleyTestSupport
@testable import ParleyIO

final class BlockingPoolTests: XCTestCase {
    /// The name of the calling thread (`pthread_getname_np` is not imported).
    static func threadName() -> String {
        let fd = open("/proc/thread-self/comm", O_RDONLY)
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buf, buf.count)
        return String(decoding: buf.prefix(max(0, n)), as: UTF8.self).trimmingCharacters(in: .newlines)
    }

    func testWorkRunsOnAPoolThreadAndTheResultOnTheCallersLoop() throws {
        let group = try EventLoopGroup(numberOfThreads: 2)
        defer { group.syncShutdownGracefully() }
        let pool = BlockingPool(threads: 2, metrics: MetricsRegistry())
        defer { pool.shutdown() }
        let caller = group.loops[1]
        let workThread = Shared<String>(""), workOnALoop = Shared<Bool>(true), thenOnCaller = Shared<Bool>(false)
        let done = expectation(description: "then")
        caller.execute {
            do {
                try pool.run(on: caller, { () -> Int in
                    workThread.value = Self.threadName()
                    workOnALoop.value = group.loops.contains { $0.inEventLoop }
                    return 42
                }, then: { result in
                    thenOnCaller.value = caller.inEventLoop
                    XCTAssertEqual(try? result.get(), 42)
                    done.fulfill()
                })
            } catch {
                XCTFail("refused: \(error)")
            }
        }
        wait(for: [done], timeout: 30)
        XCTAssertTrue(workThread.value.hasPrefix("parley-pool-"), workThread.value)
        XCTAssertFalse(workOnALoop.value)
        XCTAssertTrue(thenOnCaller.value)
    }

    struct Broken: Error, Equatable { let why: String }

    func testAnErrorThrownByTheWorkReachesThen() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let pool = BlockingPool(threads: 1, metrics: MetricsRegistry())
        defer { pool.shutdown() }
        let got = Shared<Broken?>(nil)
        let done = expectation(description: "then")
        try pool.run(on: group.loops[0], { () -> Int in throw Broken(why: "disk full") }, then: { result in
            if case .failure(let e) = result { got.value = e as? Broken }
            done.fulfill()
        })
        wait(for: [done], timeout: 30)
        XCTAssertEqual(got.value, Broken(why: "disk full"))
    }

    /// One thread held busy; the queue takes `queueCapacity` more, and the
    /// next is refused at once with EAGAIN (counted), without running.
    func testAFullQueueRefusesAtOnceAndTheAcceptedWorkStillRuns() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let metrics = MetricsRegistry()
        let pool = BlockingPool(threads: 1, queueCapacity: 2, metrics: metrics)
        let gate = Gate()
        defer { gate.open(); pool.shutdown() }
        let loop = group.loops[0]
        let ran = Shared<[Int]>([])
        let finished = expectation(description: "accepted work done")
        finished.expectedFulfillmentCount = 3
        for i in 0..<3 {
            try pool.run(on: loop, {
                if i == 0 { gate.wait() }
                ran.update { $0.append(i) }
            }, then: { _ in finished.fulfill() })
            if i == 0 { waitUntil("the first item holds the thread") { pool.queuedCount == 0 && gate.waiters == 1 } }
        }
        XCTAssertEqual(pool.queuedCount, 2)
        XCTAssertThrowsError(try pool.run(on: loop, { ran.update { $0.append(99) } }, then: { _ in })) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EAGAIN)
        }
        XCTAssertEqual(metrics.counter("parley_blocking_refused_total", help: "").current, 1)
        gate.open()
        wait(for: [finished], timeout: 30)
        XCTAssertEqual(ran.value, [0, 1, 2])
    }

    /// Shutdown waits for the queued work, delivers its results, then refuses.
    func testShutdownDrainsQueuedWorkThenRefuses() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let pool = BlockingPool(threads: 1, metrics: MetricsRegistry())
        let loop = group.loops[0]
        let gate = Gate()
        let delivered = Shared<[Int]>([])
        for i in 0..<4 {
            try pool.run(on: loop, { () -> Int in
                if i == 0 { gate.wait() }
                return i
            }, then: { result in delivered.update { $0.append(try! result.get()) } })
        }
        waitUntil("the first item holds the thread") { gate.waiters == 1 }
        let stopped = Shared<Bool>(false)
        let stopper = TestThread {
            pool.shutdown()
            stopped.value = true
        }
        // Probes accepted before shutdown took hold are queued work like the rest.
        var probes = 0
        waitUntil("shutdown refuses new work") {
            do {
                try pool.run(on: loop, { 100 }, then: { result in delivered.update { $0.append(try! result.get()) } })
                probes += 1
                return false
            } catch {
                return true
            }
        }
        XCTAssertFalse(stopped.value, "shutdown returned before the queued work ran")
        gate.open()
        stopper.join()
        XCTAssertEqual(pool.queuedCount, 0)
        XCTAssertEqual(try loop.submit { delivered.value }, [0, 1, 2, 3] + Array(repeating: 100, count: probes))
        XCTAssertThrowsError(try pool.run(on: loop, { 0 }, then: { _ in })) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ESHUTDOWN)
        }
        pool.shutdown() // a second call returns at once
    }
}
