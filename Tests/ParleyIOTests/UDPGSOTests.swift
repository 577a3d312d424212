import XCTest
import Glibc
import ParleyCore
@testable import ParleyIO

/// UDP GSO in `UDPSendBatch.flush()`: same-destination, same-size runs go out
/// as one `UDP_SEGMENT` message; receivers still see individual datagrams,
/// byte-exact and in order per destination.
final class UDPGSOTests: XCTestCase {
    /// Datagram `seq` for destination `dest`: a header naming both, then a pattern.
    static func datagram(dest: Int, seq: Int, size: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: size)
        b[0] = UInt8(dest); b[1] = UInt8(seq >> 8); b[2] = UInt8(truncatingIfNeeded: seq)
        for k in 3..<size { b[k] = UInt8(truncatingIfNeeded: dest &* 31 &+ seq &* 7 &+ k) }
        return b
    }

    /// Queues `plan[d]` (sizes, in order) for destination d, interleaved
    /// across destinations, in one flush; checks what every receiver got.
    /// Returns the sender's metrics text.
    func run(_ bind: SocketAddress, gso: Bool, plan: [[Int]], noCopy: Bool = false,
             configure: (@Sendable (UDPSocket) -> Void)? = nil) throws -> (String, Bool) {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        let metrics = MetricsRegistry()
        var o = UDPSocket.Options()
        o.metrics = metrics
        o.gso = gso
        o.sendBatchSize = plan.reduce(0) { $0 + $1.count }
        let opts = o
        let subs = plan.map { _ in UDPCollector() }
        let all = expectation(description: "all datagrams")
        all.expectedFulfillmentCount = plan.count
        for (d, s) in subs.enumerated() {
            let want = plan[d].count
            s.onReceive = { if s.received.count == want { all.fulfill() } }
        }
        let sockets = try loop.submit { try subs.map { try UDPSocket(loop: loop, bindTo: bind, handler: $0) } }
        let sender = try loop.submit {
            let s = try UDPSocket(loop: loop, bindTo: bind, options: opts, handler: NullUDP())
            configure?(s)
            return s
        }
        let packets = plan.enumerated().map { d, sizes in sizes.enumerated().map { Self.datagram(dest: d, seq: $0, size: $1) } }
        let total = o.sendBatchSize!
        let (sent, enabled) = try loop.submit {
            let longest = plan.map(\.count).max() ?? 0
            for seq in 0..<longest {
                for d in plan.indices where seq < plan[d].count {
                    packets[d][seq].withUnsafeBytes { p in
                        if noCopy {
                            sender.sendBatch.appendNoCopy(p, to: sockets[d].localAddress) // valid: flushed below while `packets` lives
                        } else {
                            sender.sendBatch.append(p, to: sockets[d].localAddress)
                        }
                    }
                }
            }
            XCTAssertEqual(sender.sendBatch.count, total)
            return (sender.sendBatch.flush(), sender.sendBatch.gsoEnabled)
        }
        XCTAssertEqual(sent, total)
        wait(for: [all], timeout: 60)
        try loop.submit {
            for (d, s) in subs.enumerated() {
                XCTAssertEqual(s.received.count, plan[d].count, "destination \(d)")
                for (seq, r) in s.received.enumerated() {
                    XCTAssertEqual(r.bytes, packets[d][seq], "destination \(d) datagram \(seq)")
                    XCTAssertEqual(r.source, sender.localAddress)
                }
            }
            sockets.forEach { $0.close() }
            sender.close()
        }
        let text = metrics.render()
        XCTAssertTrue(text.contains("parley_udp_sent_packets_total \(total)\n"), text)
        XCTAssertFalse(text.contains("parley_udp_dropped_total{reason=\"send_error\"} 1"), text)
        return (text, enabled)
    }

    static func saved(_ text: String) -> Int {
        for line in text.split(separator: "\n") where line.hasPrefix("parley_udp_gso_saved_messages_total ") {
            return Int(line.split(separator: " ")[1]) ?? -1
        }
        return 0
    }

    /// The relay's shape: a batch of same-size packets fanned out to several
    /// destinations, interleaved; each destination's run becomes GSO messages.
    func fanOut(_ bind: SocketAddress) throws {
        let plan = [Array(repeating: 200, count: 40), Array(repeating: 1200, count: 70), Array(repeating: 200, count: 40) + [100]]
        let (text, enabled) = try run(bind, gso: true, plan: plan, noCopy: true)
        XCTAssertFalse(text.contains("parley_udp_gso_disabled_total 1"), text)
        if enabled {
            // 40 → 1 message; 70 x 1200 B → 54 + 16 (64 KiB cap); 40 + 1 shorter → 1.
            XCTAssertEqual(Self.saved(text), 39 + 68 + 40, text)
        }
    }

    func testFanOutRunsIPv4() throws { try fanOut(.ipv4Loopback(port: 0)) }
    func testFanOutRunsIPv6() throws { try fanOut(.ipv6Loopback(port: 0)) }

    /// More than 64 same-size datagrams to one destination: split at 64 segments.
    func testRunIsSplitAt64Segments() throws {
        let (text, enabled) = try run(.ipv4Loopback(port: 0), gso: true, plan: [Array(repeating: 100, count: 150)])
        if enabled { XCTAssertEqual(Self.saved(text), 150 - 3, text) }
    }

    /// Mixed sizes: a run ends at a size change; a shorter one closes it,
    /// a longer one starts a new one; datagrams over one segment's limit go alone.
    func testMixedSizesFallBack() throws {
        let plan = [[100, 200, 300, 400],            // growing: no run
                    [300, 300, 100, 300, 300, 300], // 300,300,100 | 300,300,300
                    [1500, 1500, 1500],             // above the segment limit: plain
                    [50]]
        let (text, enabled) = try run(.ipv4Loopback(port: 0), gso: true, plan: plan)
        if enabled { XCTAssertEqual(Self.saved(text), 0 + 4 + 0 + 0, text) }
    }

    /// The kernel refuses segmented sends on a socket without UDP checksums
    /// (`SO_NO_CHECK`: EINVAL): GSO turns itself off, counted, and the whole
    /// flush still arrives, in order, as plain datagrams.
    func testKernelRefusalDisablesGSOAndFallsBack() throws {
        let plan = [[80, 90], Array(repeating: 200, count: 20), Array(repeating: 300, count: 20)]
        let (text, enabled) = try run(.ipv4Loopback(port: 0), gso: true, plan: plan) { s in
            var one: Int32 = 1
            XCTAssertEqual(setsockopt(s.fd, SOL_SOCKET, SO_NO_CHECK, &one, socklen_t(MemoryLayout<Int32>.size)), 0)
        }
        XCTAssertFalse(enabled)
        XCTAssertTrue(text.contains("parley_udp_gso_disabled_total 1\n"), text)
        XCTAssertEqual(Self.saved(text), 0, text)
    }

    /// Many destinations, interleaved in the queue: every one forms its own
    /// runs (grouping has no bound) and gets its datagrams in order.
    func testManyDestinationsKeepOrder() throws {
        let plan = (0..<200).map { d in Array(repeating: 120, count: 3 + d % 3) }
        let (text, enabled) = try run(.ipv4Loopback(port: 0), gso: true, plan: plan)
        if enabled { XCTAssertEqual(Self.saved(text), (0..<200).reduce(0) { $0 + 2 + $1 % 3 }, text) }
    }

    /// `Options.gso = false`: the same traffic, nothing coalesced.
    func testGSOOff() throws {
        let plan = [Array(repeating: 200, count: 30), Array(repeating: 200, count: 30)]
        let (text, enabled) = try run(.ipv4Loopback(port: 0), gso: false, plan: plan)
        XCTAssertFalse(enabled)
        XCTAssertEqual(Self.saved(text), 0, text)
    }

    /// This kernel (Linux ≥ 4.18) has UDP_SEGMENT: GSO is on by default.
    func testGSODetected() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let loop = group.next()
        try loop.submit {
            let s = try UDPSocket(loop: loop, bindTo: .ipv4Loopback(port: 0), handler: NullUDP())
            XCTAssertTrue(s.sendBatch.gsoEnabled)
            s.close()
        }
    }
}
