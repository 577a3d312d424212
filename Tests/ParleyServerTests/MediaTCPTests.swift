import XCTest
import Glibc
import Foundation
import ParleyCore
import ParleyRTP
import ParleyIO
import ParleyRelay
import ParleySRTP
import ParleyTestSupport
@testable import ParleyServer
@testable import ParleyProtocol

/// Media over TCP (RFC 4571 framing) for SDES clients, in one room with a
/// UDP client, through the real signalling and relay on loopback: the TCP
/// client asks for it in `join` (`transport: "tcp"`), latches with STUN over
/// its connection, and both exchange SRTP through the same packet path.
/// Then the bounds: frames over the size cap are skipped (the stream stays
/// in sync), connections over the per-IP cap are closed, and a TCP reader
/// that stops reading costs it its own packets, never anyone else's.
final class MediaTCPTests: XCTestCase {
    var fx: RelayServerFixture!

    override func setUpWithError() throws {
        var t = RelayTCPConfig()
        t.maxConnectionsPerIP = 3
        t.maxFrameBytes = 1500
        t.writeBufferBytes = 16 << 10
        fx = try RelayServerFixture(loops: 1, tcp: t)
    }

    override func tearDown() { fx.stop() }

    func counter(_ name: String, _ labels: MetricLabels) -> Int {
        MetricsRegistry.shared.counter(name, help: "", labels: labels).current
    }

    /// Joins `name` over `transport`, publishes audio, returns the client, join reply and track.
    func join(_ name: String, transport: String? = nil) throws -> (BlockingSignallingClient, JSONValue, JSONValue) {
        let c = try fx.connect()
        try c.call(.auth(token: fx.token(name), room: nil))
        let join = try c.call(.join(room: nil, publish: true, subscribe: true, suite: nil, transport: transport))
        let pub = try c.call(.publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)]))
        return (c, join, pub["tracks"]!.arrayValue![0])
    }

    func bind(_ peer: MediaPeer, _ join: JSONValue) -> Bool {
        peer.bind(ufrag: join["ice"]!["ufrag"]!.stringValue!, password: join["ice"]!["pwd"]!.stringValue!)
    }

    func testSDESClientOverTCPAndUDPClientExchangeSRTPInOneRoom() throws {
        let (a, joinA, trackA) = try join("alice")
        let (b, joinB, trackB) = try join("bob", transport: "tcp")
        XCTAssertEqual(joinA["media"]?["protocol"]?.stringValue, "udp")
        XCTAssertEqual(joinB["media"]?["protocol"]?.stringValue, "tcp")
        let tcpPort = try XCTUnwrap(fx.relay.workers[0].tcpLocalAddress?.port)
        XCTAssertEqual(joinB["media"]?["port"]?.intValue, Int(tcpPort))
        let listed = joinA["media"]?["candidates"]?.arrayValue?.compactMap { $0["protocol"]?.stringValue } ?? []
        XCTAssertEqual(listed, ["udp", "tcp"], "every join reply lists both endpoints")
        _ = try a.nextEvent("track_published")
        try a.call(.subscribe(track: trackB["id"]!.stringValue!))
        try b.call(.subscribe(track: trackA["id"]!.stringValue!))
        let ssrcA = UInt32(trackA["ssrc"]!.intValue!), ssrcB = UInt32(trackB["ssrc"]!.intValue!)

        let peerA = try MediaPeer(join: joinA), peerB = try MediaPeer(join: joinB)
        XCTAssertTrue(peerB.tcp)
        XCTAssertTrue(bind(peerA, joinA), "Alice latches over UDP")
        XCTAssertTrue(bind(peerB, joinB), "Bob latches over his TCP connection: STUN and the consent check framed")
        waitUntil("bob latched over TCP") {
            let s = try? fx.relay.statsSync(room: "call")
            return s?.participants.first { $0.name == "bob" }?.address?.hasPrefix("tcp:127.0.0.1:") == true
        }

        // UDP → TCP: Alice's packets reach Bob framed, re-encrypted for him.
        var sent: [[UInt8]] = [], got: [[UInt8]] = []
        for _ in 0..<5 { sent.append(try peerA.sendNext(ssrc: ssrcA)) }
        for _ in 0..<5 { if let p = try peerB.receiveRTP() { got.append(p) } }
        XCTAssertEqual(got, sent)
        // TCP → UDP: Bob's framed packets reach Alice as datagrams.
        sent = []; got = []
        for _ in 0..<5 { sent.append(try peerB.sendNext(ssrc: ssrcB)) }
        for _ in 0..<5 { if let p = try peerA.receiveRTP() { got.append(p) } }
        XCTAssertEqual(got, sent)

        // A frame over media-tcp-max-frame is skipped and counted; the stream stays in sync.
        let tooLarge = counter("parley_relay_tcp_dropped_total", [("reason", "frame_too_large")])
        sendFrame(peerB.fd, [UInt8](repeating: 0x80, count: 3000))
        let after = try peerB.sendNext(ssrc: ssrcB)
        XCTAssertEqual(try peerA.receiveRTP(), after)
        XCTAssertEqual(counter("parley_relay_tcp_dropped_total", [("reason", "frame_too_large")]), tooLarge + 1)
        a.close()
        b.close()
    }

    func testTCPReaderThatStopsReadingLosesItsOwnPacketsOnly() throws {
        let (a, joinA, trackA) = try join("alice")
        let (b, joinB, _) = try join("bob", transport: "tcp")
        let (c, joinC, _) = try join("carol")
        try b.call(.subscribe(track: trackA["id"]!.stringValue!))
        try c.call(.subscribe(track: trackA["id"]!.stringValue!))
        let ssrcA = UInt32(trackA["ssrc"]!.intValue!)
        let peerA = try MediaPeer(join: joinA), peerB = try MediaPeer(join: joinB), peerC = try MediaPeer(join: joinC)
        XCTAssertTrue(bind(peerA, joinA))
        XCTAssertTrue(bind(peerB, joinB))
        XCTAssertTrue(bind(peerC, joinC))
        fx.waitUntilLatched(["alice", "bob", "carol"])
        _ = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertNotNil(try peerB.receiveRTP(), "bob receives over TCP while he reads")
        XCTAssertNotNil(try peerC.receiveRTP())

        // Bob stops reading. Alice keeps sending until the relay has dropped
        // copies for Bob (his connection's write budget is full).
        let dropped = counter("parley_relay_tcp_dropped_total", [("reason", "write_buffer_full")])
        let deadline = Date().addingTimeInterval(60)
        while counter("parley_relay_tcp_dropped_total", [("reason", "write_buffer_full")]) == dropped, Date() < deadline {
            for _ in 0..<200 {
                peerA.seq &+= 1
                peerA.send(try peerA.rtp(ssrc: ssrcA, seq: peerA.seq, size: 1000).srtp)
            }
            while peerC.receive(timeout: 0) != nil {} // Carol reads all the while
        }
        XCTAssertGreaterThan(counter("parley_relay_tcp_dropped_total", [("reason", "write_buffer_full")]), dropped)
        // The relay was never held: Carol still gets Alice's next packet at once.
        while peerC.receive(timeout: 0.2) != nil {}
        let marker = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerC.receiveRTP(), marker)
        a.close(); b.close(); c.close()
    }

    func testConnectionsOverThePerIPCapAreClosedAndTCPCanBeRefusedInJoin() throws {
        let port = try XCTUnwrap(fx.relay.workers[0].tcpLocalAddress?.port)
        let refused = counter("parley_relay_tcp_connections_total", [("result", "refused_per_ip")])
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<3 { fds.append(try XCTUnwrap(connectTCP(ip: "127.0.0.1", port: port))) }
        waitUntil("three connections admitted") {
            MetricsRegistry.shared.gauge("parley_relay_tcp_connections", help: "").current >= 3
        }
        let fourth = try XCTUnwrap(connectTCP(ip: "127.0.0.1", port: port))
        fds.append(fourth)
        XCTAssertNil(receiveFrame(fourth), "the fourth connection from 127.0.0.1 is closed at once")
        XCTAssertEqual(counter("parley_relay_tcp_connections_total", [("result", "refused_per_ip")]), refused + 1)

        // A server without a TCP media port refuses transport tcp in join, and a transport it does not know.
        let plain = try RelayServerFixture(loops: 1)
        defer { plain.stop() }
        let c = try plain.connect()
        try c.call(.auth(token: plain.token("dave"), room: nil))
        XCTAssertThrowsError(try c.call(.join(room: nil, publish: false, subscribe: true, suite: nil, transport: "tcp"))) {
            guard case .refused(let err) = $0 as? SignallingClientError else { return XCTFail("\($0)") }
            XCTAssertEqual(err.1.code, .unsupported)
        }
        XCTAssertThrowsError(try c.call(.join(room: nil, publish: false, subscribe: true, suite: nil, transport: "sctp"))) {
            guard case .refused(let err) = $0 as? SignallingClientError else { return XCTFail("\($0)") }
            XCTAssertEqual(err.1.code, .badRequest)
        }
        XCTAssertNotNil(try c.call(.join(room: nil, publish: false, subscribe: true, suite: nil))["media"])
        c.close()
    }
}

final class MediaTCPIdleTests: XCTestCase {
    /// A connection nobody latches is closed after the idle timeout even
    /// while it keeps sending (garbage, or STUN that authenticates nobody).
    func testAConnectionThatLatchesNobodyIsClosed() throws {
        var t = RelayTCPConfig()
        t.idleTimeout = .milliseconds(300)
        let fx = try RelayServerFixture(loops: 1, tcp: t)
        defer { fx.stop() }
        let port = try XCTUnwrap(fx.relay.workers[0].tcpLocalAddress?.port)
        let closedBefore = MetricsRegistry.shared.counter("parley_relay_tcp_unlatched_closed_total", help: "").current
        let fd = try XCTUnwrap(connectTCP(ip: "127.0.0.1", port: port))
        defer { close(fd) }
        var closed = false
        let deadline = Date().addingTimeInterval(30)
        while !closed, Date() < deadline {
            // A frame of 0xFF 0x00 0x01: not STUN, RTP or DTLS, dropped; it keeps the connection busy.
            let frame: [UInt8] = [0, 3, 0xFF, 0x00, 0x01]
            _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 50) == 1 {
                var b = [UInt8](repeating: 0, count: 64)
                closed = recv(fd, &b, b.count, 0) <= 0
            }
        }
        XCTAssertTrue(closed, "the relay closed the connection")
        XCTAssertEqual(MetricsRegistry.shared.counter("parley_relay_tcp_unlatched_closed_total", help: "").current, closedBefore + 1)
    }
}

final class MediaTCPConfigTests: XCTestCase {
    func testTCPKeysParseAndTCPOnlyCandidatesNeedATCPPort() throws {
        var c = ServerConfig()
        XCTAssertNil(c.mediaTCPPorts, "off by default")
        try c.set("media-tcp-ports", "7750-7751")
        XCTAssertEqual(c.mediaTCPPorts, 7750...7751)
        try c.set("media-tcp-write-buffer", "65536")
        XCTAssertEqual(c.mediaTCPWriteBuffer, 65536)
        XCTAssertThrowsError(try c.set("media-tcp-max-frame", "70000"))
        XCTAssertThrowsError(try c.set("webrtc-candidates", "udp,sctp"))
        try c.set("webrtc-candidates", "tcp")
        XCTAssertNoThrow(try c.validate())
        try c.set("media-tcp-ports", "off")
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual(($0 as? ConfigError)?.key, "webrtc-candidates") }
        // One announced address per family, for media-host :: (both families).
        try c.set("media-announce", "203.0.113.7,2001:db8::7")
        XCTAssertEqual(c.mediaAnnounce, "203.0.113.7")
        XCTAssertEqual(c.mediaAnnounceOther, "2001:db8::7")
        XCTAssertThrowsError(try c.set("media-announce", "203.0.113.7,203.0.113.8"), "two of one family")
        XCTAssertThrowsError(try c.set("media-announce", "203.0.113.7,::"), "a wildcard is nowhere to send to")
    }
}
