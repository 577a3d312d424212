import XCTest
import ParleyTestSupport
import Glibc
import Synchronization
import ParleyCore
@testable import ParleyIO

/// `TCPOptions.maxQueuedWriteBytes` against a real peer that never reads.
final class TCPWriteLimitTests: XCTestCase {
    override func setUp() { raiseFDLimit() }

    /// Writes 32 KiB every millisecond regardless of writability (as a room
    /// broadcasting to a member does) and records the largest queue it saw.
    final class Broadcaster: TCPConnectionHandler, @unchecked Sendable {
        static let chunk = [UInt8](repeating: 0x5a, count: 32 << 10)
        let result: Shared<(reason: TCPCloseReason?, maxQueued: Int, written: Int)>
        var timer: TimerHandle?
        var maxQueued = 0, written = 0
        init(_ r: Shared<(reason: TCPCloseReason?, maxQueued: Int, written: Int)>) { result = r }

        func connectionDidBecomeActive(_ c: TCPConnection) {
            timer = c.loop.scheduleRepeatingTimer(every: .milliseconds(1)) { [weak self, weak c] in
                guard let self, let c, c.isOpen else { return }
                c.write(Self.chunk)
                self.written += Self.chunk.count
                self.maxQueued = max(self.maxQueued, c.pendingWriteBytes)
            }
        }
        func connection(_ c: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {}
        func connection(_ c: TCPConnection, didCloseWith reason: TCPCloseReason) {
            if let t = timer { c.loop.cancelTimer(t) }
            result.value = (reason, maxQueued, written)
        }
    }

    func testPeerThatNeverReadsIsAbortedOnceQueuedBytesPassTheCap() throws {
        let server = try EventLoopGroup(numberOfThreads: 1)
        defer { server.syncShutdownGracefully() }
        let loop = server.next()
        let cap = 256 << 10
        var so = TCPOptions()
        so.sendBufferSize = 16 << 10
        so.maxQueuedWriteBytes = cap
        so.highWaterMark = 8 << 20 // no read pause: only the cap stops the queue
        let o = so
        let result = Shared<(reason: TCPCloseReason?, maxQueued: Int, written: Int)>((nil, 0, 0))
        let listener = try loop.submit {
            try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0)) { sock in
                _ = try? TCPConnection.adopt(sock, on: loop, options: o, handler: Broadcaster(result))
            }
        }
        defer { try? loop.submit { listener.close() } }
        let peer = BlockingSocket(connectTo: listener.localAddress, receiveBuffer: 4096)
        defer { peer.close() }

        waitUntil("the server gives up on the peer") { result.value.reason != nil }
        let r = result.value
        XCTAssertEqual(r.reason, .writeQueueFull)
        // The queue never held more than the cap plus the one write that crossed it.
        XCTAssertLessThanOrEqual(r.maxQueued, cap + Broadcaster.chunk.count)
        XCTAssertGreaterThan(r.maxQueued, cap, "the cap was crossed before the abort")
        // The peer sees the connection end (reset: its unread bytes were dropped).
        var got = 0
        peer.readAll { got += $0.count }
        XCTAssertLessThan(got, r.written)
    }
}
