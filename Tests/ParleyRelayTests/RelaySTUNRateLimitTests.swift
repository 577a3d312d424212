import XCTest
import Foundation
import Glibc
import ParleyCore
import ParleyIO
import ParleySTUN
import ParleyTestSupport
@testable import ParleyRelay

/// STUN answers to strangers are limited per source IP (issue #14, finding
/// 6: 100k Binding requests from one source were all answered).
final class RelaySTUNRateLimitTests: XCTestCase {
    private let limit = STUNRateLimit(rate: 20, burst: 40, sources: 64)

    /// A credential-less Binding request (28 bytes: header and FINGERPRINT).
    private func bindingRequest() -> [UInt8] {
        try! BindingCheck.request(username: nil, key: nil)
    }

    /// Sends `total` requests from `client` in chunks the server's socket
    /// buffer holds, waiting for each chunk to be counted by `processed`.
    private func flood(_ client: TestClient, to dest: SocketAddress, total: Int, processed: () -> Int) {
        let start = processed()
        for sent in stride(from: 0, to: total, by: 250) {
            for _ in 0..<min(250, total - sent) { client.send(bindingRequest(), to: dest) }
            waitUntil("chunk processed") { processed() - start == min(sent + 250, total) }
        }
    }

    func testSTUNServiceAnswersAFloodingSourceAtItsRateAndOthersAsUsual() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let metrics = MetricsRegistry()
        let service = try STUNService.start(on: group.loops[0], bindTo: .ipv4Loopback(port: 0), rateLimit: limit, metrics: metrics)
        defer { try? group.loops[0].submit { service.close() } }
        func count(_ result: String) -> Int {
            metrics.counter("parley_stun_bindings_total", help: "", labels: [("result", result)]).current
        }

        let flooder = TestClient()
        let start = MonotonicTime.now()
        flood(flooder, to: service.localAddress, total: 5000) { count("success") + count("rate_limited") }
        let elapsed = Double(MonotonicTime.now().nanoseconds - start.nanoseconds) / 1e9
        let answered = count("success")
        XCTAssertGreaterThanOrEqual(answered, limit.burst, "the burst is answered")
        XCTAssertLessThanOrEqual(Double(answered), Double(limit.burst) + Double(limit.rate) * elapsed + 1,
                                 "\(answered) answers in \(elapsed) s")
        XCTAssertEqual(count("rate_limited"), 5000 - answered)
        XCTAssertEqual(flooder.drain().count, answered, "what was not counted as answered was not sent")

        // Another source is answered at once: our client, and coturn's
        // turnutils_stunclient (which sends once and never retransmits).
        let other = try XCTUnwrap(TestClient(ipv4: "127.0.0.2"), "no 127.0.0.2 on this host's loopback")
        let resp = try XCTUnwrap(other.bind(to: service.localAddress, ufrag: nil, password: nil))
        try resp.withUnsafeBytes { XCTAssertEqual(try STUNMessageView(parsing: $0).xorMappedAddress(), STUNAddress(other.address)) }
        let tool = try XCTUnwrap(["/usr/bin/turnutils_stunclient", "/usr/local/bin/turnutils_stunclient"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }, "turnutils_stunclient (tools/setup installs coturn)")
        let r = try runTool(tool, ["-p", String(service.localAddress.port), "-L", "127.0.0.2", "127.0.0.1"], timeout: 30)
        XCTAssertEqual(r.status, 0, r.out + r.err)
        XCTAssertTrue((r.out + r.err).contains("reflexive addr: 127.0.0.2:"), r.out + r.err)

        // Once the flood stops, the flooder's IP earns tokens again.
        var recovered = false
        waitUntil("the flooder's IP answered again") {
            flooder.send(bindingRequest(), to: service.localAddress)
            recovered = flooder.receive(timeout: 0.2) != nil
            return recovered
        }
        XCTAssertTrue(recovered)
    }

    func testMediaPortLimitsUnauthenticatedAnswersButNotParticipants() throws {
        let l = limit
        let f = try RelayFixture { $0.stunRateLimit = l }
        let g = try f.add("r", [.opus()])
        func count() -> Int { f.counter("parley_relay_stun_bindings_total") + f.counter("parley_relay_dropped_total", [("reason", "stun_rate_limited")]) }

        let flooder = TestClient()
        let start = MonotonicTime.now()
        flood(flooder, to: f.mediaAddress, total: 2000, processed: count)
        let elapsed = Double(MonotonicTime.now().nanoseconds - start.nanoseconds) / 1e9
        let answered = f.counter("parley_relay_stun_bindings_total")
        XCTAssertGreaterThanOrEqual(answered, limit.burst)
        XCTAssertLessThanOrEqual(Double(answered), Double(limit.burst) + Double(limit.rate) * elapsed + 1,
                                 "\(answered) answers in \(elapsed) s")
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "stun_rate_limited")]), 2000 - answered)
        XCTAssertEqual(flooder.drain().count, answered)

        // Same IP, but the request authenticates: answered and, once the
        // consent check is answered, latched.
        let c = TestClient()
        let resp = try XCTUnwrap(c.bind(to: f.mediaAddress, grant: g))
        try resp.withUnsafeBytes { XCTAssertEqual(try STUNMessageView(parsing: $0).type, .bindingSuccess) }
        f.waitUntilLatched("r", g.name, c)
    }

    func testLimiterTableStaysBoundedUnderManySources() {
        // 64 entries; a flood from 10,000 other sources does not make the
        // flooder's empty bucket full again (it is the most recently seen in its set).
        let l = SourceRateLimiter(STUNRateLimit(rate: 1, burst: 2, sources: 64))
        let flooder = SocketAddress(ip: "198.51.100.7", port: 4000)!
        var now: UInt64 = 1_000_000_000
        XCTAssertTrue(l.admit(flooder, nowNs: now))
        XCTAssertTrue(l.admit(flooder.withPort(4001), nowNs: now), "the port does not matter")
        XCTAssertFalse(l.admit(flooder, nowNs: now))
        for i in 0..<10_000 {
            // 10 ms in all: not enough for a token. The flooder is seen at
            // its own instants, later than every source before it, so three
            // new sources between its requests can never make it the least
            // recently seen of its set (at the same instant, a tie could).
            now += 500
            XCTAssertTrue(l.admit(SocketAddress(ipv4NetworkOrder: UInt32(0x0a00_0000 + i).bigEndian, port: 1), nowNs: now))
            now += 500
            if i % 3 == 0 { XCTAssertFalse(l.admit(flooder, nowNs: now), "source \(i)") }
        }
        now += 1_000_000_000
        XCTAssertTrue(l.admit(flooder, nowNs: now), "a second later it has a token again")
    }
}
