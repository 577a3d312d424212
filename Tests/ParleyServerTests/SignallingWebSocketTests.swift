import XCTest
import ParleyTestSupport
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
@testable import ParleyServer
@testable import ParleyWeb
@testable import ParleySignalling
@testable import ParleyProtocol
@testable import ParleyAuth

/// Signalling over real WebSocket connections on loopback: JWT tokens, the
/// Swift client, Python's `websockets`, and the admin API through curl.
/// The media side is the in-memory backend of SignallingCoreTests; the
/// relay end-to-end tests are in SignallingRelayTests.
final class SignallingWebSocketTests: XCTestCase {
    var group: EventLoopGroup!
    var server: HTTPServer!
    var service: SignallingService!
    var address: SocketAddress!
    let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }

    override func setUpWithError() throws {
        group = try EventLoopGroup(numberOfThreads: 2, logger: quietLogger)
        let router = HTTPRouter()
        BuiltinRoutes.install(on: router)
        service = try SignallingService(backend: SignallingCoreTests.Backend(), verifier: JWTVerifier(secret: secret),
                                    graceSeconds: 2, logger: quietLogger)
        service.install(on: router)
        server = HTTPServer(group: group, router: router, tls: nil, logger: quietLogger)
        address = try server.start(at: SocketAddress("127.0.0.1:0")!)
    }

    override func tearDown() {
        server.stop()
        service.shutdown()
        group.syncShutdownGracefully()
    }

    func token(_ sub: String, room: String? = "r1", ttl: Int64 = 600, admin: Bool = false, secret: [UInt8]? = nil) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return JWT.sign(TokenClaims(subject: sub, room: room, issuedAt: now - 10, expiresAt: now + ttl,
                                    canPublish: true, isAdmin: admin), secret: secret ?? self.secret)
    }

    func client() throws -> BlockingSignallingClient {
        try BlockingSignallingClient.connect(loop: group.next(), address: address, host: "127.0.0.1")
    }

    func testBadAndExpiredTokensAreRefusedAndClosed() throws {
        let forged = token("mallory", secret: (0..<32).map { _ in 7 })
        for (tok, code, close) in [(forged, "invalid_token", UInt16(4001)), (token("old", ttl: -5), "token_expired", 4002),
                                   ("not-a-jwt", "invalid_token", 4001)] {
            let c = try client()
            let r = try c.request(.auth(token: tok, room: nil))
            XCTAssertEqual(r["code"]?.stringValue, code)
            XCTAssertEqual(try c.waitForClose(), close)
        }
        let c = try client()
        XCTAssertEqual(try c.request(.auth(token: token("alice"), room: "other"))["code"], "wrong_room")
        XCTAssertEqual(try c.waitForClose(), 4003)
    }

    func testJoinEventsAndAdminAPI() throws {
        let a = try client()
        XCTAssertEqual(try a.call(.auth(token: token("alice"), room: nil))["participant"], "alice")
        let ja = try a.call(.join(room: "r1", publish: true, subscribe: true, suite: nil))
        XCTAssertEqual(ja["srtp"]?["suite"], "AES_CM_128_HMAC_SHA1_80")
        let b = try client()
        try b.call(.auth(token: token("bob"), room: nil))
        try b.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
        XCTAssertEqual(try a.nextEvent("participant_joined")["participant"], "bob")

        let base = "http://127.0.0.1:\(address.port)"
        XCTAssertEqual(try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/admin/rooms"]).out, "401")
        XCTAssertEqual(try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                                            "Authorization: Bearer \(token("alice"))", "\(base)/admin/rooms"]).out, "403")
        let admin = token("ops", room: nil, admin: true)
        let rooms = try runTool("curl", ["-sS", "-H", "Authorization: Bearer \(admin)", "\(base)/admin/rooms"])
        let v = try JSONValue.parse(rooms.out.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(v["rooms"]?.arrayValue?.first?["participants"]?.arrayValue?.compactMap { $0["id"]?.stringValue }, ["alice", "bob"])

        let kick = try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H",
                                        "Authorization: Bearer \(admin)", "\(base)/admin/rooms/r1/participants/bob"])
        XCTAssertEqual(kick.out, "204")
        XCTAssertEqual(try b.waitForClose(), 4005)
        let left = try a.nextEvent("participant_left")
        XCTAssertEqual(left["participant"], "bob")
        XCTAssertEqual(left["reason"], "kicked")
        XCTAssertEqual(try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H",
                                            "Authorization: Bearer \(admin)", "\(base)/admin/rooms/r1/participants/bob"]).out, "404")
        a.close()
    }

    func testMalformedFramesAndMessages() throws {
        let c = try client()
        c.send("{not json")
        let e = try c.nextEvent("error")
        XCTAssertEqual(e["code"], "bad_request")
        XCTAssertEqual(try c.waitForClose(), 4001, "garbage before auth closes the connection")
    }

    func testRoomlessTokenJoinsANamedRoomAndDevicesOfOneUserConnectSideBySide() throws {
        let phone = try client()
        let a = try phone.call(.auth(token: token("alice", room: nil), room: nil, device: "phone"))
        XCTAssertNil(a["room"])
        XCTAssertEqual(a["device"], "phone")
        XCTAssertEqual(try phone.call(.join(room: "r9", publish: true, subscribe: true, suite: nil))["room"], "r9")
        let laptop = try client()
        XCTAssertEqual(try laptop.call(.auth(token: token("alice", room: nil), room: nil, device: "laptop"))["resumed"], false)
        XCTAssertEqual(service.onLoop { core, _ in core.presence.devices(of: "alice").map(\.device) }, ["laptop", "phone"])

        // The phone's new connection resumes its call; the old one is closed, the laptop stays.
        let phone2 = try client()
        let r = try phone2.call(.auth(token: token("alice", room: nil), room: nil, device: "phone"))
        XCTAssertEqual(r["resumed"], true)
        XCTAssertEqual(r["join"]?["room"], "r9")
        XCTAssertEqual(try phone.waitForClose(), SignallingCloseCode.replaced)
        XCTAssertEqual(try laptop.call(.ping)["ok"], true)
        laptop.close()
        phone2.close()
    }

    /// A feature that records which thread it runs on, and answers from a
    /// completion that comes back from another loop (as a relay call's does).
    final class ThreadProbe: SignallingFeature {
        unowned let core: SignallingCore
        let signalling: EventLoop
        let other: EventLoop
        init(core: SignallingCore, signalling: EventLoop, other: EventLoop) {
            self.core = core
            self.signalling = signalling
            self.other = other
        }
        var messageTypes: [String] { ["probe"] }
        func handle(_ request: ClientRequest, from session: SignallingSession, reply: SignallingReply) {
            let handledOnLoop = signalling.inEventLoop
            let signalling = signalling
            let answer = core.onSignallingThread { (completedElsewhere: Bool) in
                reply.ok(["handledOnLoop": .bool(handledOnLoop), "completedElsewhere": .bool(completedElsewhere),
                          "answeredOnLoop": .bool(signalling.inEventLoop)])
            }
            other.execute { answer(!signalling.inEventLoop) }
        }
    }

    func testCoreAndFeaturesRunOnTheSignallingLoopAndAnswerLater() throws {
        let other = group.next()
        service.onLoop { [service] core, _ in
            core.register(ThreadProbe(core: core, signalling: service!.loop, other: other))
        }
        let c = try client()
        try c.call(.auth(token: token("alice", room: nil), room: nil))
        let r = try c.call(ClientRequest(type: "probe"))
        XCTAssertEqual(r["handledOnLoop"], true)
        XCTAssertEqual(r["completedElsewhere"], true)
        XCTAssertEqual(r["answeredOnLoop"], true)
        XCTAssertFalse(service.loop.inEventLoop, "the test's thread is not the signalling loop")
        XCTAssertEqual(try c.call(.ping)["ok"], true)
        c.close()
    }

    /// The parser kept the last of two keys, so `"room":"r2","room":"r1"`
    /// joined r1 here and may mean r2 to a proxy or logger that reads the first.
    func testDuplicateKeyInAMessageIsABadRequest() throws {
        let c = try client()
        try c.call(.auth(token: token("alice"), room: nil))
        c.send(#"{"id":1,"type":"join","room":"r2","room":"r1"}"#)
        let e = try c.nextEvent("error")
        XCTAssertEqual(e["code"], "bad_request")
        XCTAssertEqual(e["message"], #"invalid JSON at byte 34: duplicate key "room""#)
        XCTAssertEqual(service.onLoop { _, calls in calls.roomsJSON() }["rooms"]?.arrayValue, [], "nobody joined")
        // Refused, not closed: the next request on the connection is served.
        XCTAssertEqual(try c.call(.join(room: "r1", publish: true, subscribe: true, suite: nil))["type"], "join")
        c.close()
    }

    /// The admin API had its own token check beside the one of /metrics and
    /// the transcoding routes, with other messages: now one check answers a
    /// missing, bad, expired or non-admin token identically everywhere.
    func testAdminAPIAndMetricsRefuseTokensIdentically() throws {
        let router = HTTPRouter()
        BuiltinRoutes.install(on: router, access: .admin, secret: secret)
        let service = try SignallingService(backend: SignallingCoreTests.Backend(), verifier: JWTVerifier(secret: secret), logger: quietLogger)
        service.install(on: router)
        let server = HTTPServer(group: group, router: router, tls: nil, logger: quietLogger)
        defer { server.stop(); service.shutdown() }
        let port = Int(try server.start(at: SocketAddress("127.0.0.1:0")!).port)
        /// What a client acts on: the status line, any challenge, the body.
        func answer(_ method: String, _ path: String, _ token: String?) throws -> [String] {
            let r = try httpRequest(port, method, path, headers: token.map { ["Authorization: Bearer \($0)"] } ?? [])
            guard let end = r.range(of: "\r\n\r\n") else { XCTFail(r); return [] }
            let head = r[..<end.lowerBound].components(separatedBy: "\r\n")
            return [head[0]] + head.filter { $0.lowercased().hasPrefix("www-authenticate:") } + [String(r[end.upperBound...])]
        }
        let invalid = #"WWW-Authenticate: Bearer error="invalid_token""#
        let cases: [(token: String?, status: String, challenge: String?)] = [
            (nil, "401", "WWW-Authenticate: Bearer"),
            (token("mallory", secret: (0..<32).map { _ in 7 }), "401", invalid),
            ("not-a-jwt", "401", invalid),
            (token("old", ttl: -5), "401", invalid),
            (token("alice"), "403", nil),
        ]
        for c in cases {
            let metrics = try answer("GET", "/metrics", c.token)
            XCTAssertTrue(metrics.first?.hasPrefix("HTTP/1.1 \(c.status) ") == true, "\(metrics)")
            XCTAssertEqual(metrics.count == 3 ? metrics[1] : nil, c.challenge, "\(metrics)")
            XCTAssertEqual(try answer("GET", "/admin/rooms", c.token), metrics)
            XCTAssertEqual(try answer("DELETE", "/admin/rooms/r1/participants/bob", c.token), metrics)
        }
        let admin = token("ops", room: nil, admin: true)
        XCTAssertTrue(try answer("GET", "/metrics", admin)[0].hasPrefix("HTTP/1.1 200 "))
        XCTAssertTrue(try answer("GET", "/admin/rooms", admin)[0].hasPrefix("HTTP/1.1 200 "))
    }

    func testWebSocketFramingRules() throws {
        // A request split over fragments (with a ping in between) is one message.
        let c = try client()
        let auth = Array(ClientMessage(id: "a1", request: .auth(token: token("frag"), room: nil)).encoded.utf8)
        c.send(frame: WebSocketFrame(fin: false, opcode: .text, payload: Array(auth[..<10])))
        c.send(frame: WebSocketFrame(opcode: .ping, payload: [1, 2]))
        c.send(frame: WebSocketFrame(fin: true, opcode: .continuation, payload: Array(auth[10...])))
        XCTAssertEqual(try c.call(.ping)["type"], "ping", "authenticated by the reassembled auth")
        // Binary messages are not part of the protocol: 1003.
        c.send(frame: WebSocketFrame(opcode: .binary, payload: [1, 2, 3]))
        XCTAssertEqual(try c.waitForClose(), 1003)

        // Over 1 MiB: 1009. Under it but over the 256 KiB signalling limit: an error, connection kept.
        let d = try client()
        try d.call(.auth(token: token("big"), room: nil))
        d.send("{\"id\":5,\"type\":\"ping\",\"pad\":\"" + String(repeating: "x", count: 300_000) + "\"}")
        XCTAssertEqual(try d.nextEvent("error")["code"], "bad_request")
        XCTAssertEqual(try d.call(.ping)["ok"], true)
        d.send(String(repeating: "y", count: (1 << 20) + 1))
        XCTAssertEqual(try d.waitForClose(), 1009)
    }

    func testPythonWebsocketsClientJoins() throws {
        let script = repositoryPath("tools/interop/ws_join.py")
        let r = try runTool("python3", [script, "ws://127.0.0.1:\(address.port)/ws", token("py")])
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let lines = try r.out.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(lines[0]["participant"], "py")
        XCTAssertNotNil(lines[1]["srtp"]?["send"]?.stringValue)
        XCTAssertEqual(lines[2]["type"], "ping")
    }
}
