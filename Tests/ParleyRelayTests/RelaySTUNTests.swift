import XCTest
import Glibc
import ParleyCore
import ParleyIO
import ParleySTUN
@testable import ParleyRelay
import ParleyTestSupport

/// STUN on the media port (address discovery and latching) and the plain STUN service.
final class RelaySTUNTests: XCTestCase {
    private func parse(_ bytes: [UInt8], _ body: (STUNMessageView) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { raw in
            let m = try! STUNMessageView(parsing: raw)
            try body(m)
        }
    }

    func testBindingWithCredentialsGetsReflexiveAddressAndLatches() throws {
        let f = try RelayFixture()
        let g = try f.add("r", [.opus()])
        XCTAssertEqual(g.endpoint, f.mediaAddress.description)
        XCTAssertEqual(g.ufrag.count, 8)
        XCTAssertGreaterThanOrEqual(g.password.count, 22)
        let c = TestClient()
        let resp = try XCTUnwrap(c.bind(to: f.mediaAddress, grant: g))
        parse(resp) { m in
            XCTAssertEqual(m.type, .bindingSuccess)
            XCTAssertEqual(try? m.xorMappedAddress(), STUNAddress("127.0.0.1", port: c.address.port))
            XCTAssertTrue(Array(g.password.utf8).withUnsafeBytes { m.verifyMessageIntegrity(key: $0) })
            XCTAssertTrue(m.verifyFingerprint())
        }
        f.waitUntilLatched("r", g.name, c)
        XCTAssertTrue(f.events.all.contains(.participantLatched(room: "r", name: g.name, address: c.address.description)))

        // A second binding from a new address moves the session (NAT
        // rebinding) once the new address answers the relay's consent check.
        let c2 = TestClient()
        XCTAssertNotNil(c2.bind(to: f.mediaAddress, grant: g))
        f.waitUntilLatched("r", g.name, c2)
        XCTAssertEqual(f.counter("parley_relay_consent_checks_total", [("result", "succeeded")]), 2)
    }

    func testBindingWithoutCredentialsAnswersButDoesNotLatch() throws {
        let f = try RelayFixture()
        _ = try f.add("r", [.opus()])
        let c = TestClient()
        let resp = try XCTUnwrap(c.bind(to: f.mediaAddress, ufrag: nil, password: nil))
        parse(resp) { m in
            XCTAssertEqual(m.type, .bindingSuccess)
            XCTAssertEqual(try? m.xorMappedAddress(), STUNAddress("127.0.0.1", port: c.address.port))
        }
        XCTAssertNil(try f.stats("r").participants.first?.address)
    }

    func testBindingWithWrongPasswordIsRejectedAndDoesNotLatch() throws {
        let f = try RelayFixture()
        let g = try f.add("r", [.opus()])
        let c = TestClient()
        let resp = try XCTUnwrap(c.bind(to: f.mediaAddress, ufrag: g.ufrag, password: "not-the-password-at-all"))
        parse(resp) { m in
            XCTAssertEqual(m.type, .bindingError)
            XCTAssertEqual(try? m.errorCode()?.code, 401)
        }
        // Unknown username too.
        let resp2 = try XCTUnwrap(c.bind(to: f.mediaAddress, ufrag: "nobody00", password: g.password))
        parse(resp2) { m in XCTAssertEqual(try? m.errorCode()?.code, 401) }
        XCTAssertNil(try f.stats("r").participants.first?.address)
        XCTAssertEqual(f.counter("parley_relay_dropped_total", [("reason", "stun_rejected")]), 2)
    }

    func testPlainSTUNServiceAnswersAnyClient() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let metrics = MetricsRegistry()
        let service = try STUNService.start(on: group.loops[0], bindTo: .ipv4Loopback(port: 0), metrics: metrics)
        defer { try? group.loops[0].submit { service.close() } }
        let c = TestClient()
        let resp = try XCTUnwrap(c.bind(to: service.localAddress, ufrag: nil, password: nil))
        parse(resp) { m in
            XCTAssertEqual(m.type, .bindingSuccess)
            XCTAssertEqual(try? m.xorMappedAddress(), STUNAddress("127.0.0.1", port: c.address.port))
        }
        // Garbage is dropped without an answer; the next request still works.
        c.send([0, 1, 0, 0, 1, 2, 3], to: service.localAddress)
        XCTAssertNotNil(c.bind(to: service.localAddress, ufrag: nil, password: nil))
        XCTAssertEqual(metrics.counter("parley_stun_bindings_total", help: "", labels: [("result", "success")]).current, 2)
    }
}

/// The same over IPv6 loopback: XOR-MAPPED-ADDRESS carries the v6 address
/// (XORed with cookie + transaction ID) and forwarding works.
final class RelayIPv6Tests: XCTestCase {
    func testIPv6BindingLatchesAndForwards() throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        var c = RelayConfig()
        c.metrics = MetricsRegistry()
        let relay: Relay
        do {
            relay = try Relay(loops: group.loops, mediaAddresses: [.ipv6Loopback(port: 0)], config: c)
        } catch {
            throw XCTSkip("no IPv6 loopback here: \(error)")
        }
        defer { relay.shutdown() }
        let media = relay.workers[0].localAddress
        let a = try waitFor { relay.join(room: "v6", name: "a", tracks: [.opus()], completion: $0) }
        let ssrc = a.tracks[0].ssrc
        _ = try waitFor { relay.publish(room: "v6", name: "a", track: .opus(ssrc: ssrc), completion: $0) }
        let b = try waitFor { relay.join(room: "v6", name: "b", tracks: [], completion: $0) }
        try waitFor { relay.setSubscribed(room: "v6", subscriber: "b", ssrc: ssrc, true, completion: $0) }
        let ca = try XCTUnwrap(TestClient(ipv6: true)), cb = try XCTUnwrap(TestClient(ipv6: true))
        let resp = try XCTUnwrap(ca.bind(to: media, grant: a))
        try resp.withUnsafeBytes { raw in
            let m = try STUNMessageView(parsing: raw)
            XCTAssertEqual(m.type, .bindingSuccess)
            XCTAssertEqual(try m.xorMappedAddress(), STUNAddress("::1", port: ca.address.port))
        }
        XCTAssertNotNil(cb.bind(to: media, grant: b))
        let p = rtpPacket(ssrc: a.tracks[0].ssrc, seq: 1, pt: 111, payload: payload(ssrc: 1, seq: 1))
        ca.send(p, to: media)
        XCTAssertEqual(cb.receive(where: isRTP), p)
    }
}
