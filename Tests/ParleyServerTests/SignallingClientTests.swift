import XCTest
import Foundation
import ParleyCore
import ParleyIO
import ParleyWeb
import ParleyProtocol
@testable import ParleyServer

/// The loop-native `SignallingClient` against the daemon's front end and
/// relay in-process on loopback (`RelayServerFixture`), driven the way a
/// load generator drives it: many clients on one loop, everything posted to
/// that loop, callbacks recorded for the test thread.
final class SignallingClientTests: XCTestCase {
    /// One client's handler: records what reached it, on the client loop.
    final class Participant: SignallingClientHandler, @unchecked Sendable {
        let name: String
        let lock = NSLock()
        var replies: [String: Result<JSONValue, SignallingClientError>] = [:]
        /// Request types in the order their completions ran.
        var order: [String] = []
        var events: [JSONValue] = []
        var closed: (code: UInt16?, reason: String?)?
        var onEvent: (JSONValue) -> Void = { _ in }
        var onClose: () -> Void = {}
        var onConnect: () -> Void = {}

        init(_ name: String) { self.name = name }

        func record(_ type: String, _ result: Result<JSONValue, SignallingClientError>) {
            lock.withLock {
                replies[type] = result
                order.append(type)
            }
        }
        func reply(_ type: String) -> Result<JSONValue, SignallingClientError>? { lock.withLock { replies[type] } }

        func signallingClientDidConnect(_ client: SignallingClient) { onConnect() }
        func signallingClient(_ client: SignallingClient, received event: JSONValue) {
            lock.withLock { events.append(event) }
            onEvent(event)
        }
        func signallingClient(_ client: SignallingClient, didCloseWith code: UInt16?, reason: String?) {
            lock.withLock { closed = (code, reason) }
            onClose()
        }
    }

    /// A WebSocket path on the real server that never answers; a message
    /// saying "close" closes the connection with 4321.
    final class SilentService: WebSocketService {
        func webSocketOpened(_ ws: WebSocketConnection, request: HTTPServerRequest) {}
        func webSocket(_ ws: WebSocketConnection, received text: String) {
            if text.contains("close") { ws.close(code: 4321, reason: "asked to") }
        }
        func webSocketClosed(_ ws: WebSocketConnection) {}
    }

    /// A WebSocket path on the real server that answers every three requests
    /// last first, each reply echoing its request's id and type.
    final class ReversingService: WebSocketService, @unchecked Sendable {
        let lock = NSLock()
        var held: [JSONValue] = []
        func webSocketOpened(_ ws: WebSocketConnection, request: HTTPServerRequest) {}
        func webSocket(_ ws: WebSocketConnection, received text: String) {
            let batch: [JSONValue]? = lock.withLock {
                held.append((try? JSONValue.parse(text)) ?? .null)
                guard held.count == 3 else { return nil }
                defer { held = [] }
                return held
            }
            for m in (batch ?? []).reversed() {
                ws.send(text: signallingReply(id: m["id"] ?? .null, type: m["type"]?.stringValue ?? "", ["echo": m]).serialized)
            }
        }
        func webSocketClosed(_ ws: WebSocketConnection) {}
    }

    var clients: EventLoopGroup!
    var loop: EventLoop { clients.loops[0] }

    override func setUpWithError() throws {
        clients = try EventLoopGroup(numberOfThreads: 1, logger: quietLogger)
    }

    override func tearDown() {
        clients.syncShutdownGracefully()
    }

    /// 200 clients on one loop each pipeline auth, join and ping before their
    /// handshake is done; every reply reaches the request it answers (its own
    /// participant, room and type), every room's join events arrive, and the
    /// loop holds one timer per client.
    func testTwoHundredClientsOnOneLoopJoinWithEveryReplyMatchedToItsRequest() throws {
        let rooms = 20, perRoom = 10
        let fx = try RelayServerFixture { $0.maxConnectionsPerIP = rooms * perRoom }
        defer { fx.stop() }
        let participants = (0..<rooms * perRoom).map { Participant("u\($0)") }
        let tokens = participants.indices.map { fx.token(participants[$0].name, room: "room\($0 % rooms)") }
        let answered = expectation(description: "every request answered")
        answered.expectedFulfillmentCount = participants.count * 3
        // A member hears participant_joined for each later joiner: n(n-1)/2 per room.
        let joinEvents = expectation(description: "every join event")
        joinEvents.expectedFulfillmentCount = rooms * perRoom * (perRoom - 1) / 2
        for p in participants {
            p.onEvent = { if $0["type"] == "participant_joined" { joinEvents.fulfill() } }
        }
        let address = fx.front.address
        let (connections, timers) = try loop.submit { [loop] in
            let connections = try zip(participants, tokens).map { p, token in
                let c = try SignallingClient.connect(to: address, host: "127.0.0.1", on: loop, handler: p)
                c.request(.auth(token: token, room: nil)) { p.record("auth", $0); answered.fulfill() }
                c.request(.join(room: nil, publish: true, subscribe: true, suite: nil)) { p.record("join", $0); answered.fulfill() }
                c.request(.ping) { p.record("ping", $0); answered.fulfill() }
                return c
            }
            return (connections, loop.scheduledTimerCount)
        }
        XCTAssertLessThanOrEqual(timers, participants.count, "one timer per client at most")
        wait(for: [answered, joinEvents], timeout: 60)

        for (n, p) in participants.enumerated() {
            XCTAssertEqual(try p.reply("auth")?.get()["participant"]?.stringValue, p.name)
            let join = try XCTUnwrap(p.reply("join")?.get())
            XCTAssertEqual(join["type"], "join")
            XCTAssertEqual(join["participant"]?.stringValue, p.name)
            XCTAssertEqual(join["room"]?.stringValue, "room\(n % rooms)")
            XCTAssertEqual(try p.reply("ping")?.get()["type"], "ping")
            XCTAssertTrue(p.lock.withLock { p.events.allSatisfy { $0["id"] == nil } }, "only events reach the handler")
        }
        XCTAssertEqual(try loop.submit { connections.map(\.pendingRequestCount).reduce(0, +) }, 0)

        let closed = expectation(description: "every client closed")
        closed.expectedFulfillmentCount = participants.count
        for p in participants { p.onClose = { closed.fulfill() } }
        try loop.submit { connections.forEach { $0.close() } }
        wait(for: [closed], timeout: 30)
        for p in participants { XCTAssertNil(p.lock.withLock { p.closed?.reason }, "a clean close of our own") }
    }

    /// Replies that come in another order than the requests still reach
    /// their own requests: correlation is by id, not by order.
    func testRepliesAnsweredOutOfOrderReachTheirRequests() throws {
        let fx = try RelayServerFixture()
        defer { fx.stop() }
        fx.front.router.addWebSocket("/reverse", ReversingService())
        let p = Participant("any")
        let answered = expectation(description: "three answers")
        answered.expectedFulfillmentCount = 3
        let address = fx.front.address
        let requests: [ClientRequest] = [.subscribe(track: "a/1"), .unsubscribe(track: "b/2"), .mute(track: "c/3", muted: true)]
        try loop.submit { [loop] in
            let c = try SignallingClient.connect(to: address, host: "127.0.0.1", path: "/reverse", on: loop, handler: p)
            for r in requests {
                c.request(r) { p.record(r.type, $0); answered.fulfill() }
            }
        }
        wait(for: [answered], timeout: 30)
        XCTAssertEqual(p.lock.withLock { p.order }, ["mute", "unsubscribe", "subscribe"], "answered last first")
        XCTAssertEqual(try p.reply("subscribe")?.get()["echo"]?["track"], "a/1")
        XCTAssertEqual(try p.reply("unsubscribe")?.get()["echo"]?["track"], "b/2")
        XCTAssertEqual(try p.reply("mute")?.get()["echo"]?["track"], "c/3")
    }

    /// A request the server never answers fails with `.timedOut` from the
    /// client's timer; the connection stays open and no timer is left behind.
    func testARequestTheServerNeverAnswersTimesOut() throws {
        let fx = try RelayServerFixture()
        defer { fx.stop() }
        fx.front.router.addWebSocket("/silent", SilentService())
        let p = Participant("quiet")
        let done = expectation(description: "the ping ended")
        let address = fx.front.address
        let client = try loop.submit { [loop] in
            let c = try SignallingClient.connect(to: address, host: "127.0.0.1", path: "/silent", on: loop, handler: p)
            c.request(.ping, timeout: .milliseconds(300)) { p.record("ping", $0); done.fulfill() }
            return c
        }
        wait(for: [done], timeout: 30)
        XCTAssertEqual(p.reply("ping"), .failure(.timedOut("reply to ping")))
        let (open, pending, timers) = try loop.submit { [loop] in (client.isOpen, client.pendingRequestCount, loop.scheduledTimerCount) }
        XCTAssertTrue(open)
        XCTAssertEqual(pending, 0)
        XCTAssertEqual(timers, 0, "nothing pending, no timer")
        try loop.submit { client.close() }
    }

    /// The server's close code reaches the handler and fails what is still
    /// pending; a request after the close fails at once with the same code.
    func testServerCloseIsReportedWithItsCode() throws {
        let fx = try RelayServerFixture()
        defer { fx.stop() }
        fx.front.router.addWebSocket("/silent", SilentService())
        let address = fx.front.address

        // The signalling service: a bad token is refused, then closed with 4001.
        let refused = Participant("mallory")
        let closed = expectation(description: "closed")
        refused.onClose = { closed.fulfill() }
        let client = try loop.submit { [loop] in
            let c = try SignallingClient.connect(to: address, host: "127.0.0.1", on: loop, handler: refused)
            c.request(.auth(token: "not-a-jwt", room: nil)) { refused.record("auth", $0) }
            return c
        }
        wait(for: [closed], timeout: 30)
        guard case .failure(.refused("auth", let e))? = refused.reply("auth") else { return XCTFail("\(String(describing: refused.reply("auth")))") }
        XCTAssertEqual(e.code, .invalidToken)
        XCTAssertEqual(refused.lock.withLock { refused.closed?.code }, SignallingCloseCode.unauthorized)
        try loop.submit { client.request(.ping) { refused.record("late", $0) } }
        XCTAssertEqual(refused.reply("late"), .failure(.closed(code: 4001, reason: nil)), "failed at once")

        // A request in flight when the server closes fails with the server's code.
        let pending = Participant("waiting")
        let ended = expectation(description: "the ping ended")
        try loop.submit { [loop] in
            let c = try SignallingClient.connect(to: address, host: "127.0.0.1", path: "/silent", on: loop, handler: pending)
            c.request(.ping) { pending.record("ping", $0); ended.fulfill() }
            c.send(text: "close")
        }
        wait(for: [ended], timeout: 30)
        XCTAssertEqual(pending.reply("ping"), .failure(.closed(code: 4321, reason: nil)))
    }

    /// wss:// against the self-signed certificate the server generated.
    func testClientJoinsOverTLS() throws {
        let fx = try RelayServerFixture(tls: true)
        defer { fx.stop() }
        let p = Participant("alice")
        let joined = expectation(description: "joined")
        let connected = expectation(description: "handshake done")
        let (address, tls, token) = (fx.front.address, try XCTUnwrap(try fx.clientTLS()), fx.token("alice"))
        p.onConnect = { connected.fulfill() }
        let client = try loop.submit { [loop] in
            let c = try SignallingClient.connect(to: address, host: "127.0.0.1", tls: tls, on: loop, handler: p)
            c.request(.auth(token: token, room: nil)) { p.record("auth", $0) }
            c.request(.join(room: nil, publish: true, subscribe: true, suite: nil)) { p.record("join", $0); joined.fulfill() }
            return c
        }
        wait(for: [connected, joined], timeout: 30)
        XCTAssertEqual(try p.reply("auth")?.get()["participant"], "alice")
        XCTAssertEqual(try p.reply("join")?.get()["srtp"]?["suite"], "AES_CM_128_HMAC_SHA1_80")
        try loop.submit { client.close() }
    }
}
