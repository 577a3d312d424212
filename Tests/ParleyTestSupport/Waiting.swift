import Foundation
import XCTest

/// Holds threads (a pool's, a loop's) in ``wait()`` until ``open()``, so a
/// test can fill a queue behind them without racing them.
public final class Gate: @unchecked Sendable {
    private let cond = NSCondition()
    private var isOpen = false
    private var waiting = 0

    public init() {}

    /// Threads held in ``wait()`` right now.
    public var waiters: Int { cond.lock(); defer { cond.unlock() }; return waiting }

    public func wait() {
        cond.lock()
        waiting += 1
        while !isOpen { cond.wait() }
        waiting -= 1
        cond.unlock()
    }

    public func open() {
        cond.lock(); isOpen = true; cond.broadcast(); cond.unlock()
    }
}

/// Polls `cond` every millisecond until true; the timeout is only a hang guard.
public func waitUntil(_ what: String, timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line,
                      _ cond: () -> Bool) {
    let deadline = ContinuousClock.now + .seconds(timeout)
    while !cond() {
        if ContinuousClock.now > deadline {
            XCTFail("timed out waiting for \(what)", file: file, line: line)
            return
        }
        usleep(1000)
    }
}
