import XCTest
import Glibc
import Foundation
import ParleyCore
import ParleyRTP
import ParleyIO
import ParleyRelay
import ParleyTestSupport
@testable import ParleyServer
@testable import ParleyProtocol

/// IPv6 candidates: media bound to `::` (one dual-stack socket and TCP
/// listener per loop) with `media-announce 127.0.0.1,::1` lists both
/// families in join replies and SDP answers, and peers on 127.0.0.1 and ::1
/// (UDP and TCP) exchange SRTP in one room.
final class MediaIPv6Tests: XCTestCase {
    /// Whether this machine has IPv6 loopback (::1 bindable).
    static var hasIPv6Loopback: Bool {
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return SocketAddress("[::1]:0")!.withSockAddr { Glibc.bind(fd, $0, $1) } == 0
    }

    func testPeersOnBothFamiliesOverUDPAndTCPShareARoomAndAnswersListIPv6() throws {
        try XCTSkipUnless(Self.hasIPv6Loopback, "no IPv6 loopback on this machine (::1 cannot be bound)")
        let fx = try RelayServerFixture(loops: 1, tcp: RelayTCPConfig(), mediaHost: .ipv6Any(port: 0)) {
            $0.mediaHost = "::"
            $0.mediaAnnounce = "127.0.0.1"
            $0.mediaAnnounceOther = "::1"
        }
        defer { fx.stop() }
        func join(_ name: String) throws -> (BlockingSignallingClient, JSONValue, JSONValue) {
            let c = try fx.connect()
            try c.call(.auth(token: fx.token(name), room: nil))
            let j = try c.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
            let pub = try c.call(.publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)]))
            return (c, j, pub["tracks"]!.arrayValue![0])
        }
        let (a, joinA, trackA) = try join("alice")
        let (b, joinB, trackB) = try join("bob")
        let (c, joinC, _) = try join("carol")
        let candidates = joinB["media"]?["candidates"]?.arrayValue ?? []
        XCTAssertEqual(candidates.map { "\($0["protocol"]?.stringValue ?? "") \($0["host"]?.stringValue ?? "")" },
                       ["udp 127.0.0.1", "udp ::1", "tcp 127.0.0.1", "tcp ::1"])
        XCTAssertEqual(joinB["media"]?["host"]?.stringValue, "127.0.0.1", "the first announced address stays the primary one")
        try b.call(.subscribe(track: trackA["id"]!.stringValue!))
        try c.call(.subscribe(track: trackA["id"]!.stringValue!))
        _ = try a.nextEvent("track_published")
        try a.call(.subscribe(track: trackB["id"]!.stringValue!))

        let peerA = try MediaPeer(join: joinA)                   // IPv4, UDP (mapped on the dual-stack socket)
        let peerB = try MediaPeer(join: joinB, endpoint: candidates[1]) // IPv6, UDP
        let peerC = try MediaPeer(join: joinC, endpoint: candidates[3]) // IPv6, TCP
        XCTAssertEqual(peerB.relay.family, .ipv6)
        XCTAssertTrue(peerC.tcp)
        for (p, j) in [(peerA, joinA), (peerB, joinB), (peerC, joinC)] {
            XCTAssertTrue(p.bind(ufrag: j["ice"]!["ufrag"]!.stringValue!, password: j["ice"]!["pwd"]!.stringValue!))
        }
        fx.waitUntilLatched(["alice", "bob", "carol"])
        let ssrcA = UInt32(trackA["ssrc"]!.intValue!), ssrcB = UInt32(trackB["ssrc"]!.intValue!)
        let fromA = try peerA.sendNext(ssrc: ssrcA)
        XCTAssertEqual(try peerB.receiveRTP(), fromA, "IPv4 → IPv6 over UDP")
        XCTAssertEqual(try peerC.receiveRTP(), fromA, "IPv4 → IPv6 over TCP")
        let fromB = try peerB.sendNext(ssrc: ssrcB)
        XCTAssertEqual(try peerA.receiveRTP(), fromB, "IPv6 → IPv4")

        // A WebRTC peer's answer lists the same candidates.
        let w = try fx.connect()
        try w.call(.auth(token: fx.token("dana"), room: nil))
        let offer = [
            "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendrecv",
            "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            "a=fingerprint:sha-256 " + (0..<32).map { _ in "AB" }.joined(separator: ":"),
            "a=setup:actpass", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=ssrc:5001 cname:dana", "",
        ].joined(separator: "\r\n")
        let answer = try XCTUnwrap(try w.call(ClientRequest(type: "offer", fields: ["sdp": .string(offer)]))["sdp"]?.stringValue)
        let lines = answer.split(separator: "\r\n").filter { $0.hasPrefix("a=candidate:") }.map { $0.split(separator: " ")[2...4].joined(separator: " ") }
        XCTAssertEqual(lines.map { $0.split(separator: " ")[0] + " " + $0.split(separator: " ")[2] },
                       ["udp 127.0.0.1", "udp ::1", "tcp 127.0.0.1", "tcp ::1"], answer)
        a.close(); b.close(); c.close(); w.close()
    }
}
