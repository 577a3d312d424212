import XCTest
import ParleyTestSupport
import Glibc
import Synchronization
import ParleyCore
@testable import ParleyIO

/// Server side: echoes everything; records backpressure and close reasons.
final class TCPEchoHandler: TCPConnectionHandler, @unchecked Sendable {
    let stats: EchoStats
    init(_ stats: EchoStats) { self.stats = stats }
    func connection(_ c: TCPConnection, didRead bytes: UnsafeRawBufferPointer) { c.write(bytes) }
    func connection(_ c: TCPConnection, writabilityChanged writable: Bool) {
        if writable { stats.resumed.add(1, ordering: .relaxed) } else { stats.paused.add(1, ordering: .relaxed) }
    }
    func connection(_ c: TCPConnection, didCloseWith reason: TCPCloseReason) {
        stats.partialWrites.add(c.partialWrites, ordering: .relaxed)
        stats.closed.add(1, ordering: .relaxed)
        if reason != .peer { stats.otherReasons.withLock { $0.append(reason) } }
    }
}

final class EchoStats: Sendable {
    let paused = Atomic<Int>(0), resumed = Atomic<Int>(0), closed = Atomic<Int>(0), partialWrites = Atomic<Int>(0)
    let otherReasons = Mutex<[TCPCloseReason]>([])
}

/// Client side: writes `total` pattern bytes, half-closes, verifies the echo.
final class EchoClient: TCPConnectionHandler, @unchecked Sendable {
    let seed: Int, total: Int
    let results: ClientResults
    var received = 0
    var corrupt = false
    init(seed: Int, total: Int, results: ClientResults) { self.seed = seed; self.total = total; self.results = results }
    func connectionDidBecomeActive(_ c: TCPConnection) {
        var off = 0
        while off < total { // several writes, so the queue sees appends on a non-empty queue too
            let n = min(32 * 1024, total - off)
            c.write(Pattern.slice(offset: off, count: n, seed: seed))
            off += n
        }
        c.shutdownWrite()
    }
    func connection(_ c: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        if received + bytes.count > total || !Pattern.check(bytes, offset: received, seed: seed) { corrupt = true }
        received += bytes.count
    }
    func connection(_ c: TCPConnection, didCloseWith reason: TCPCloseReason) {
        results.finish(bytes: received, ok: !corrupt && received == total && reason == .peer,
                       partialWrites: c.partialWrites, reason: reason)
    }
}

final class ClientResults: @unchecked Sendable {
    let lock = Mutex<(done: Int, bytes: Int, bad: Int, partial: Int, reasons: [String])>((0, 0, 0, 0, []))
    let all: XCTestExpectation
    init(_ e: XCTestExpectation) { all = e }
    func finish(bytes: Int, ok: Bool, partialWrites: Int, reason: TCPCloseReason) {
        lock.withLock {
            $0.done += 1; $0.bytes += bytes; $0.partial += partialWrites
            if !ok { $0.bad += 1; if $0.reasons.count < 5 { $0.reasons.append("\(reason) bytes=\(bytes)") } }
        }
        all.fulfill()
    }
}

final class TCPTests: XCTestCase {
    override func setUp() { raiseFDLimit() }

    func testEcho100MiBThrough1000ConnectionsWithPartialWrites() throws {
        let server = try EventLoopGroup(numberOfThreads: 1)
        let client = try EventLoopGroup(numberOfThreads: 1)
        let stats = EchoStats()
        var so = TCPOptions()
        so.sendBufferSize = 4096; so.receiveBufferSize = 4096
        so.highWaterMark = 48 * 1024; so.lowWaterMark = 8 * 1024
        let serverOptions = so
        let sloop = server.next()
        let listener = try sloop.submit {
            try TCPListener(loop: sloop, bindTo: .ipv4Loopback(port: 0), backlog: 4096) { sock in
                _ = try? TCPConnection.adopt(sock, on: sloop, options: serverOptions, handler: TCPEchoHandler(stats))
            }
        }
        let connections = 1000
        let perConnection = (100 << 20) / connections + 1 // 104,858 bytes: ≥ 100 MiB in total
        let all = expectation(description: "all clients closed")
        all.expectedFulfillmentCount = connections
        let results = ClientResults(all)
        var co = TCPOptions()
        co.sendBufferSize = 4096; co.receiveBufferSize = 4096
        let clientOptions = co
        let cloop = client.next()
        try cloop.submit {
            for i in 0..<connections {
                _ = try TCPConnection.connect(to: listener.localAddress, on: cloop, options: clientOptions,
                                              handler: EchoClient(seed: i, total: perConnection, results: results))
            }
        }
        wait(for: [all], timeout: 110)
        let r = results.lock.withLock { $0 }
        XCTAssertEqual(r.done, connections)
        XCTAssertEqual(r.bad, 0, "\(r.reasons)")
        XCTAssertEqual(r.bytes, connections * perConnection)
        XCTAssertGreaterThanOrEqual(r.bytes, 100 << 20)
        waitUntil("server connections closed") { stats.closed.load(ordering: .relaxed) == connections }
        // Small socket buffers force partial writes on both sides.
        XCTAssertGreaterThan(r.partial, 0)
        XCTAssertGreaterThan(stats.partialWrites.load(ordering: .relaxed), 0)
        XCTAssertEqual(stats.otherReasons.withLock { $0 }, [])
        XCTAssertEqual(stats.paused.load(ordering: .relaxed), stats.resumed.load(ordering: .relaxed))
        try sloop.submit { listener.close() }
        server.syncShutdownGracefully()
        client.syncShutdownGracefully()
    }

    /// Backpressure: a peer that sends but does not read makes the server
    /// queue cross the high-water mark; reads pause, then resume once the
    /// peer drains, and every byte arrives intact.
    func testHighWaterPausesReadsAndLowWaterResumes() throws {
        let server = try EventLoopGroup(numberOfThreads: 1)
        defer { server.syncShutdownGracefully() }
        let stats = EchoStats()
        var so = TCPOptions()
        // Only the send buffer is small: a tiny receive buffer on loopback
        // (MSS 64 KiB) makes the kernel fall back to zero-window probes.
        so.sendBufferSize = 4096
        so.highWaterMark = 64 * 1024; so.lowWaterMark = 16 * 1024
        let o = so
        let loop = server.next()
        let listener = try loop.submit {
            try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0)) { sock in
                _ = try? TCPConnection.adopt(sock, on: loop, options: o, handler: TCPEchoHandler(stats))
            }
        }
        let peer = BlockingSocket(connectTo: listener.localAddress)
        let total = 4 << 20
        let data = Array(Pattern.slice(offset: 0, count: total, seed: 7))
        let sender = TestThread { peer.send(data); peer.shutdownWrite() }
        // Not reading: the server's queue must fill past the high-water mark.
        waitUntil("server paused") { stats.paused.load(ordering: .relaxed) > 0 }
        let (got, ok) = peer.readAllChecking(seed: 7)
        sender.join()
        peer.close()
        XCTAssertTrue(ok)
        XCTAssertEqual(got, total)
        XCTAssertGreaterThanOrEqual(stats.resumed.load(ordering: .relaxed), 1)
        try loop.submit { listener.close() }
    }

    func testShutdownWithPendingWritesFlushesThem() throws {
        let server = try EventLoopGroup(numberOfThreads: 1)
        let loop = server.next()
        let total = 8 << 20
        let pendingAtShutdown = Shared(0)
        let reason = Shared<TCPCloseReason?>(nil)
        var so = TCPOptions()
        so.sendBufferSize = 4096
        let o = so
        let written = expectation(description: "queued")
        let listener = try loop.submit {
            try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0)) { sock in
                let h = CloseRecorder(reason)
                guard let c = try? TCPConnection.adopt(sock, on: loop, options: o, handler: h) else { return }
                c.write(Pattern.slice(offset: 0, count: total, seed: 3))
                pendingAtShutdown.value = c.pendingWriteBytes
                written.fulfill()
            }
        }
        let peer = BlockingSocket(connectTo: listener.localAddress)
        wait(for: [written], timeout: 30)
        XCTAssertGreaterThan(pendingAtShutdown.value, total / 2) // really pending
        let stopper = TestThread { server.syncShutdownGracefully() } // listener closes, connection flushes
        let (got, ok) = peer.readAllChecking(seed: 3)
        stopper.join()
        peer.close()
        XCTAssertTrue(ok)
        XCTAssertEqual(got, total)
        XCTAssertEqual(reason.value, .shutdown)
    }

    func testTenThousandAcceptedConnectionsLeaveNoFDsBehind() throws {
        let before = openFDs()
        do {
            let server = try EventLoopGroup(numberOfThreads: 1)
            let loop = server.next()
            let accepted = Counter(), closed = Counter()
            let tracker = CloseCounter(closed)
            let listener = try loop.submit {
                try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0), backlog: 4096) { sock in
                    accepted.inc()
                    _ = try? TCPConnection.adopt(sock, on: loop, handler: tracker)
                }
            }
            let wave = 1000
            for w in 1...10 {
                let peers = (0..<wave).map { _ in BlockingSocket(connectTo: listener.localAddress) }
                waitUntil("wave \(w) accepted") { accepted.current == w * wave }
                peers.forEach { $0.close() }
                waitUntil("wave \(w) closed") { closed.current == w * wave }
            }
            XCTAssertEqual(accepted.current, 10_000)
            XCTAssertEqual(try loop.submit { loop.registrationCount }, 1) // just the listener
            try loop.submit { listener.close() }
            server.syncShutdownGracefully()
        }
        XCTAssertEqual(leakedFDs(since: before), [])
    }

    func testHalfCloseIsReportedAndWritingContinues() throws {
        let server = try EventLoopGroup(numberOfThreads: 1)
        defer { server.syncShutdownGracefully() }
        let loop = server.next()
        var so = TCPOptions()
        so.allowHalfClose = true
        let o = so
        let listener = try loop.submit {
            try TCPListener(loop: loop, bindTo: .ipv6Loopback(port: 0)) { sock in
                _ = try? TCPConnection.adopt(sock, on: loop, options: o, handler: HalfCloseReplier())
            }
        }
        let peer = BlockingSocket(connectTo: listener.localAddress)
        peer.send(Array("hello parley".utf8))
        peer.shutdownWrite()
        var reply: [UInt8] = []
        peer.readAll { reply += $0 }
        peer.close()
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), "hello parley|eof after 12 bytes")
        try loop.submit { listener.close() }
    }

    func testIdleTimeoutClosesQuietConnection() throws {
        let server = try EventLoopGroup(numberOfThreads: 1)
        defer { server.syncShutdownGracefully() }
        let loop = server.next()
        let reason = Shared<TCPCloseReason?>(nil)
        var so = TCPOptions()
        so.idleTimeout = .milliseconds(100)
        let o = so
        let listener = try loop.submit {
            try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0)) { sock in
                _ = try? TCPConnection.adopt(sock, on: loop, options: o, handler: CloseRecorder(reason))
            }
        }
        let peer = BlockingSocket(connectTo: listener.localAddress)
        var got = 0
        peer.readAll { got += $0.count } // returns at EOF
        peer.close()
        XCTAssertEqual(got, 0)
        waitUntil("reason recorded") { reason.value != nil }
        XCTAssertEqual(reason.value, .idleTimeout)
        try loop.submit { listener.close() }
    }

    func testConnectToClosedPortFails() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        // A port nobody listens on: bind, learn the port, close.
        let port: UInt16 = try loop.submit {
            let l = try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0)) { $0.close() }
            defer { l.close() }
            return l.localAddress.port
        }
        let reason = Shared<TCPCloseReason?>(nil)
        _ = try loop.submit {
            try TCPConnection.connect(to: .ipv4Loopback(port: port), on: loop, handler: CloseRecorder(reason))
        }
        waitUntil("connect result") { reason.value != nil }
        XCTAssertEqual(reason.value, .connectFailed(SystemError(errno: ECONNREFUSED, function: "connect")))
    }
}

final class CloseRecorder: TCPConnectionHandler, @unchecked Sendable {
    let reason: Shared<TCPCloseReason?>
    init(_ r: Shared<TCPCloseReason?>) { reason = r }
    func connection(_ c: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {}
    func connection(_ c: TCPConnection, didCloseWith reason: TCPCloseReason) { self.reason.value = reason }
}

final class CloseCounter: TCPConnectionHandler, @unchecked Sendable {
    let closed: Counter
    init(_ c: Counter) { closed = c }
    func connection(_ c: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {}
    func connection(_ c: TCPConnection, didCloseWith reason: TCPCloseReason) { closed.inc() }
}

final class HalfCloseReplier: TCPConnectionHandler, @unchecked Sendable {
    var got = 0
    func connection(_ c: TCPConnection, didRead bytes: UnsafeRawBufferPointer) { got += bytes.count; c.write(bytes) }
    func connectionPeerDidHalfClose(_ c: TCPConnection) {
        c.write("|eof after \(got) bytes")
        c.close()
    }
}
