import XCTest
import Glibc
import ParleyCore
@testable import ParleyIO

/// Echoes every datagram back to its source with one sendmmsg per batch.
final class UDPEchoHandler: UDPSocketHandler, @unchecked Sendable {
    var sources: [SocketAddress] = []
    var maxBatch = 0
    func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
        maxBatch = max(maxBatch, batch.count)
        for d in batch {
            sources.append(d.source)
            socket.sendBatch.appendNoCopy(d.bytes, to: d.source)
        }
        socket.sendBatch.flush()
    }
}

/// Collects datagrams (copied) with their sources.
final class UDPCollector: UDPSocketHandler, @unchecked Sendable {
    var received: [(bytes: [UInt8], source: SocketAddress)] = []
    var onReceive: (() -> Void)?
    func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
        for d in batch { received.append((Array(d.bytes), d.source)) }
        onReceive?()
    }
}

final class UDPSocketTests: XCTestCase {
    static func payload(_ i: Int) -> [UInt8] {
        let len = 16 + (i * 37) % 1184 // 16...1199 bytes
        var b = [UInt8](repeating: 0, count: len)
        withUnsafeBytes(of: UInt32(i).bigEndian) { for k in 0..<4 { b[k] = $0[k] } }
        for k in 4..<len { b[k] = UInt8(truncatingIfNeeded: i &+ k &* 13) }
        return b
    }

    func roundTrip(_ bind: SocketAddress) throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let echo = UDPEchoHandler()
        let collector = UDPCollector()
        let total = 500
        let done = expectation(description: "all echoes")
        collector.onReceive = { if collector.received.count == total { done.fulfill() } }
        let (a, b) = try loop.submit {
            (try UDPSocket(loop: loop, bindTo: bind, handler: collector),
             try UDPSocket(loop: loop, bindTo: bind, handler: echo))
        }
        try loop.submit {
            // 500 datagrams through A's send batch: 8 sendmmsg calls (64 each).
            for i in 0..<total {
                Self.payload(i).withUnsafeBytes { a.sendBatch.append($0, to: b.localAddress) }
            }
            XCTAssertEqual(a.sendBatch.count, total % 64)
            a.sendBatch.flush()
        }
        wait(for: [done], timeout: 60)
        try loop.submit {
            XCTAssertEqual(collector.received.count, total)
            var seen = Set<Int>()
            for (bytes, src) in collector.received {
                XCTAssertEqual(src, b.localAddress)
                let i = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
                XCTAssertEqual(bytes, Self.payload(i))
                seen.insert(i)
            }
            XCTAssertEqual(seen, Set(0..<total))
            XCTAssertEqual(echo.sources.count, total)
            XCTAssertTrue(echo.sources.allSatisfy { $0 == a.localAddress })
            XCTAssertEqual(a.localAddress.family, bind.family)
            // The echo side cannot run while A's task is sending, so its first
            // recvmmsg finds many datagrams queued: batching really happened.
            XCTAssertGreaterThan(echo.maxBatch, 1)
            XCTAssertLessThanOrEqual(echo.maxBatch, 64)
            a.close(); b.close()
        }
    }

    func testBatchedRoundTripIPv4() throws { try roundTrip(.ipv4Loopback(port: 0)) }
    func testBatchedRoundTripIPv6() throws { try roundTrip(.ipv6Loopback(port: 0)) }

    func testLargeBuffersAreApplied() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        var o = UDPSocket.Options()
        o.receiveBufferSize = 8 << 20
        o.reusePort = true
        let opts = o
        let (rcv, second) = try loop.submit {
            let s = try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), options: opts, handler: NullUDP())
            // SO_REUSEPORT: a second socket can bind the same port.
            let t = try UDPSocket(loop: loop, bindTo: s.localAddress, options: opts, handler: NullUDP())
            defer { s.close(); t.close() }
            return (s.receiveBufferSize, t.localAddress == s.localAddress)
        }
        // As root SO_RCVBUFFORCE passes rmem_max; the kernel reports double.
        XCTAssertGreaterThanOrEqual(rcv, getuid() == 0 ? 8 << 20 : 1)
        XCTAssertTrue(second)
    }

    func testTruncatedDatagramIsDroppedAndCounted() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let metrics = MetricsRegistry()
        var o = UDPSocket.Options()
        o.maxDatagramSize = 256
        o.metrics = metrics
        let opts = o
        let collector = UDPCollector()
        let got = expectation(description: "small one")
        collector.onReceive = { if collector.received.contains(where: { $0.bytes.count == 100 }) { got.fulfill() } }
        let (rx, tx) = try loop.submit {
            (try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), options: opts, handler: collector),
             try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), handler: NullUDP()))
        }
        try loop.submit {
            _ = [UInt8](repeating: 1, count: 1000).withUnsafeBytes { tx.send($0, to: rx.localAddress) }
            _ = [UInt8](repeating: 2, count: 100).withUnsafeBytes { tx.send($0, to: rx.localAddress) }
        }
        wait(for: [got], timeout: 30)
        try loop.submit {
            XCTAssertEqual(collector.received.map { $0.bytes.count }, [100])
            XCTAssertEqual(collector.received.first?.bytes, [UInt8](repeating: 2, count: 100))
            rx.close(); tx.close()
        }
        XCTAssertTrue(metrics.render().contains("parley_udp_dropped_total{reason=\"truncated\"} 1\n"), metrics.render())
        XCTAssertTrue(metrics.render().contains("parley_udp_received_packets_total 1\n"))
    }

    /// SO_TIMESTAMPNS: off by default (0); once on, each datagram carries the
    /// kernel's receive time, between the send and the handler's clock read.
    func testReceiveTimestamps() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        final class Stamps: UDPSocketHandler, @unchecked Sendable {
            var stamps: [(at: Int64, handled: Int64)] = []
            var onReceive: (() -> Void)?
            func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
                let now = realtimeNanoseconds()
                for i in 0..<batch.count { stamps.append((batch.receivedAtNanoseconds(i), now)) }
                onReceive?()
            }
        }
        let h = Stamps()
        var expected = expectation(description: "first")
        h.onReceive = { if h.stamps.count == 1 { expected.fulfill() } }
        let (rx, tx) = try loop.submit {
            (try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), handler: h),
             try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), handler: NullUDP()))
        }
        try loop.submit {
            XCTAssertFalse(rx.receiveTimestamps)
            _ = [UInt8](repeating: 1, count: 10).withUnsafeBytes { tx.send($0, to: rx.localAddress) }
        }
        wait(for: [expected], timeout: 30)
        expected = expectation(description: "three more")
        h.onReceive = { if h.stamps.count == 4 { expected.fulfill() } }
        let sentAfter = realtimeNanoseconds()
        try loop.submit {
            try rx.setReceiveTimestamps(true)
            XCTAssertTrue(rx.receiveTimestamps)
            for _ in 0..<3 { [UInt8](repeating: 2, count: 10).withUnsafeBytes { tx.sendBatch.append($0, to: rx.localAddress) } }
            tx.sendBatch.flush()
        }
        wait(for: [expected], timeout: 30)
        try loop.submit {
            XCTAssertEqual(h.stamps[0].at, 0, "no timestamp before they were turned on")
            for s in h.stamps.dropFirst() {
                XCTAssertGreaterThanOrEqual(s.at, sentAfter)
                XCTAssertLessThanOrEqual(s.at, s.handled)
            }
            rx.close(); tx.close()
        }
    }

    /// The relay's fan-out: one packet to ten subscribers in one sendmmsg.
    func testFanOutToTenSubscribersInOneFlush() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let subs = (0..<10).map { _ in UDPCollector() }
        let all = expectation(description: "all subscribers")
        all.expectedFulfillmentCount = 10
        for s in subs { s.onReceive = { if s.received.count == 1 { all.fulfill() } } }
        let sockets = try loop.submit {
            try subs.map { try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), handler: $0) }
        }
        let sender = try loop.submit { try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), handler: NullUDP()) }
        let sent = try loop.submit {
            let packet: [UInt8] = Array(0..<200)
            return packet.withUnsafeBytes { p in
                for s in sockets { sender.sendBatch.appendNoCopy(p, to: s.localAddress) }
                return sender.sendBatch.flush()
            }
        }
        XCTAssertEqual(sent, 10)
        wait(for: [all], timeout: 30)
        try loop.submit {
            for s in subs {
                XCTAssertEqual(s.received.count, 1)
                XCTAssertEqual(s.received[0].bytes, Array(0..<200))
                XCTAssertEqual(s.received[0].source, sender.localAddress)
            }
            sockets.forEach { $0.close() }
            sender.close()
        }
    }
}
