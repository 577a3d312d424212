import ParleyRTP
import XCTest
@testable import ParleyServer
@testable import ParleySignalling
@testable import ParleyProtocol
@testable import ParleyAuth
import ParleyCore
import ParleySRTP

/// The signalling state machine driven with JSON text, as a client sends it.
/// The media side here is a small in-memory backend that records calls: the
/// end-to-end tests (SignallingEndToEndTests) run the same flows against the
/// real relay over real sockets.
final class SignallingCoreTests: XCTestCase {
    final class Transport: SignallingTransport, @unchecked Sendable {
        var sent: [JSONValue] = []
        var closed: (code: UInt16, reason: String)?
        func send(text: String) { sent.append(try! JSONValue.parse(text)) }
        func close(code: UInt16, reason: String) { closed = (code, reason) }
        func last(_ type: String) -> JSONValue? { sent.last { $0["type"]?.stringValue == type } }
    }

    /// Timers wait until `fireAll`; posted tasks run at once (these tests
    /// are all on one thread, the signalling thread).
    final class Scheduler: SignallingScheduler, @unchecked Sendable {
        var pending: [(Double, () -> Void)] = []
        var posted = 0
        func schedule(afterSeconds s: Double, _ body: @escaping () -> Void) { pending.append((s, body)) }
        func execute(_ task: @escaping @Sendable () -> Void) -> Bool { posted += 1; task(); return true }
        func fireAll() { let p = pending; pending = []; p.forEach { $0.1() } }
    }

    final class Backend: MediaBackend {
        var calls: [String] = []
        var nextSSRC: UInt32 = 1000
        /// When set, joins wait in `heldJoins` until the test answers them
        /// (the relay's answer still on its way); otherwise they are answered at once.
        var holdJoins = false
        var heldJoins: [() -> Void] = []
        func join(room: String, participant: String, publish: Bool, subscribe: Bool, keys: SRTPSessionKeys,
                  completion: @escaping @Sendable (Result<MediaGrant, SignallingError>) -> Void) {
            calls.append("join \(room) \(participant)")
            nextSSRC += 2
            let grant = MediaGrant(host: "127.0.0.1", port: 7710, iceUfrag: "u\(participant)", icePassword: "p", ssrcs: [.audio: nextSSRC, .video: nextSSRC + 1])
            if holdJoins { heldJoins.append { completion(.success(grant)) } } else { completion(.success(grant)) }
        }
        func answerHeldJoins() { let h = heldJoins; heldJoins = []; h.forEach { $0() } }
        func leave(room: String, participant: String) { calls.append("leave \(room) \(participant)") }
        func publish(room: String, participant: String, track: TrackDescription, ssrc: UInt32) { calls.append("publish \(participant) \(ssrc)") }
        func unpublish(room: String, participant: String, ssrc: UInt32) { calls.append("unpublish \(participant) \(ssrc)") }
        func subscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32) {
            calls.append("subscribe \(subscriber) \(publisher) \(ssrc)")
        }
        func unsubscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32) { calls.append("unsubscribe \(subscriber) \(ssrc)") }
        func setMuted(room: String, participant: String, ssrc: UInt32, muted: Bool) { calls.append("mute \(ssrc) \(muted)") }
    }

    /// Tokens of the form `sub@room` (room `*`: any room; a `sub` starting
    /// with `admin` is an administrator, with `viewer` may not publish), or
    /// `expired`, `forged`, so these tests need no JWT.
    struct Verifier: TokenVerifying {
        func verify(_ token: String) -> Result<AuthClaims, TokenError> {
            if token == "expired" { return .failure(.expired) }
            if token == "forged" { return .failure(.badSignature) }
            let p = token.split(separator: "@")
            guard p.count == 2 else { return .failure(.malformed("not sub@room")) }
            return .success(AuthClaims(subject: String(p[0]), room: p[1] == "*" ? nil : String(p[1]), expiresAt: 2_000_000_000,
                                       canPublish: !p[0].hasPrefix("viewer"), isAdmin: p[0].hasPrefix("admin")))
        }
    }

    var backend: Backend!
    var scheduler: Scheduler!
    var core: SignallingCore!
    var calls: CallService!
    var presence: LocalPresenceDirectory!
    var nextID: UInt64 = 0

    override func setUp() {
        backend = Backend()
        scheduler = Scheduler()
        presence = LocalPresenceDirectory()
        core = SignallingCore(verifier: Verifier(), scheduler: scheduler, presence: presence, graceSeconds: 15,
                              logger: Logger(label: "test", level: .error), clock: { 1_700_000_000 })
        calls = CallService(core: core, backend: backend)
    }

    func connect() -> (SignallingCore.ConnectionID, Transport) {
        nextID += 1
        let t = Transport()
        core.connectionOpened(nextID, transport: t)
        return (nextID, t)
    }

    func request(_ c: SignallingCore.ConnectionID, _ t: Transport, _ json: String) -> JSONValue {
        core.received(json, from: c)
        return t.sent.last!
    }

    func joined(_ token: String) -> (SignallingCore.ConnectionID, Transport, JSONValue) {
        let (c, t) = connect()
        XCTAssertEqual(request(c, t, #"{"id":1,"type":"auth","token":"\#(token)"}"#)["ok"], true)
        let r = request(c, t, #"{"id":2,"type":"join"}"#)
        XCTAssertEqual(r["ok"], true, "\(r)")
        return (c, t, r)
    }

    func testMessageCodecRoundTrip() throws {
        let session: [(JSONValue, SessionRequest)] = [
            (1, .auth(token: "t", room: "r", device: nil)),
            (2, .auth(token: "t", room: nil, device: "phone")),
            (6, .ping),
        ]
        for (id, r) in session {
            let m = try ClientMessage.decode(ClientMessage(id: id, request: r.request).encoded)
            XCTAssertEqual(m.id, id)
            XCTAssertEqual(try SessionRequest(m.request), r)
        }
        let call: [CallRequest] = [
            .join(room: nil, publish: true, subscribe: false, suite: "AEAD_AES_128_GCM"),
            .publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)]),
            .subscribe(track: "bob/7"),
            .mute(track: "bob/7", muted: false),
            .leave,
        ]
        for r in call {
            let m = try ClientMessage.decode(ClientMessage(id: "a", request: r.request).encoded)
            XCTAssertEqual(m.id, "a")
            XCTAssertEqual(try CallRequest(m.request), r)
        }
    }

    func testMalformedMessagesAreAnsweredWithErrors() {
        let (c, t, _) = joined("alice@r1")
        let table: [(String, SignallingErrorCode)] = [
            ("not json", .badRequest),
            ("[1,2]", .badRequest),
            (#"{"type":"ping"}"#, .badRequest),
            (#"{"id":{},"type":"ping"}"#, .badRequest),
            (#"{"id":1,"type":"dance"}"#, .unknownType),
            (#"{"id":1,"type":"subscribe"}"#, .badRequest),
            (#"{"id":1,"type":"publish","tracks":[{"kind":"audio","codec":"opus","payloadType":200,"clockRate":48000}]}"#, .badRequest),
            (#"{"id":1,"type":"join","publish":"yes"}"#, .badRequest),
            (#"{"id":1,"type":"auth","token":"alice@r1","device":""}"#, .badRequest),
            (String(repeating: "[", count: 100) + String(repeating: "]", count: 100), .badRequest),
        ]
        // On a live authenticated connection a bad message gets an error reply and the connection stays.
        for (text, code) in table {
            let r = request(c, t, text)
            XCTAssertEqual(r["type"], "error", text)
            XCTAssertEqual(r["code"]?.stringValue, code.rawValue, text)
        }
        let r = request(c, t, #"{"id":9,"type":"subscribe","track":17}"#)
        XCTAssertEqual(r["code"], "bad_request")
        XCTAssertEqual(r["id"], 9)
        XCTAssertNil(t.closed)
    }

    func testBadOrExpiredTokenIsRefusedAndClosed() {
        for (token, code, close) in [("forged", "invalid_token", UInt16(4001)), ("expired", "token_expired", 4002), ("junk", "invalid_token", 4001)] {
            let (c, t) = connect()
            let r = request(c, t, #"{"id":1,"type":"auth","token":"\#(token)"}"#)
            XCTAssertEqual(r["code"]?.stringValue, code)
            XCTAssertEqual(t.closed?.code, close)
        }
        let (c, t) = connect()
        let r = request(c, t, #"{"id":1,"type":"auth","token":"alice@r1","room":"r2"}"#)
        XCTAssertEqual(r["code"], "wrong_room")
        XCTAssertEqual(t.closed?.code, 4003)
        // Anything before auth is refused too.
        let (c2, t2) = connect()
        XCTAssertEqual(request(c2, t2, #"{"id":1,"type":"join"}"#)["code"], "not_authenticated")
        XCTAssertEqual(t2.closed?.code, 4001)
        XCTAssertTrue(backend.calls.isEmpty)
    }

    func testAuthTimeoutClosesIdleConnection() {
        let (_, t) = connect()
        scheduler.fireAll()
        XCTAssertEqual(t.closed?.code, 4008)
    }

    func testJoinReplyCarriesMediaGrantAndSDESKeys() throws {
        let (_, _, r) = joined("alice@r1")
        XCTAssertEqual(r["media"]?["port"], 7710)
        XCTAssertEqual(r["ice"]?["ufrag"], "ualice")
        XCTAssertNotNil(r["ssrcs"]?["audio"]?.intValue)
        XCTAssertEqual(r["srtp"]?["suite"], "AES_CM_128_HMAC_SHA1_80")
        let send = try XCTUnwrap(r["srtp"]?["send"]?.stringValue)
        let recv = try XCTUnwrap(r["srtp"]?["receive"]?.stringValue)
        let k = try SRTPKeyMaterial(suite: .aesCM128HmacSHA1_80, inlineKeyParams: send)
        XCTAssertEqual(k.keyAndSalt.count, 30)
        XCTAssertNotEqual(send, recv, "each direction has its own key")
        // A second participant gets different keys.
        let (_, _, r2) = joined("bob@r1")
        XCTAssertNotEqual(r2["srtp"]?["send"], r["srtp"]?["send"])
    }

    func testTwoParticipantsSeeEachOtherAndSubscribe() throws {
        let (ca, ta, _) = joined("alice@r1")
        let (cb, tb, rb) = joined("bob@r1")
        XCTAssertEqual(ta.last("participant_joined")?["participant"], "bob")
        XCTAssertEqual(rb["participants"]?.arrayValue?.count, 1)

        let pub = request(ca, ta, #"{"id":3,"type":"publish","tracks":[{"kind":"audio","codec":"opus","payloadType":111,"clockRate":48000,"channels":2}]}"#)
        let track = try XCTUnwrap(pub["tracks"]?.arrayValue?.first?["id"]?.stringValue)
        let event = try XCTUnwrap(tb.last("track_published"))
        XCTAssertEqual(event["track"]?["id"]?.stringValue, track)
        XCTAssertEqual(event["track"]?["codec"], "opus")

        let sub = request(cb, tb, #"{"id":4,"type":"subscribe","track":"\#(track)"}"#)
        XCTAssertEqual(sub["ok"], true)
        XCTAssertEqual(sub["ssrc"], event["track"]?["ssrc"])
        XCTAssertEqual(request(cb, tb, #"{"id":5,"type":"subscribe","track":"nobody/1"}"#)["code"], "unknown_track")

        XCTAssertEqual(request(ca, ta, #"{"id":6,"type":"mute","track":"\#(track)","muted":true}"#)["muted"], true)
        XCTAssertEqual(tb.last("track_muted")?["muted"], true)

        XCTAssertEqual(request(ca, ta, #"{"id":7,"type":"leave"}"#)["ok"], true)
        XCTAssertEqual(tb.last("participant_left")?["participant"], "alice")
        XCTAssertTrue(backend.calls.contains("leave r1 alice"))
        XCTAssertEqual(request(ca, ta, #"{"id":8,"type":"publish","tracks":[{"kind":"audio","codec":"opus","payloadType":111,"clockRate":48000}]}"#)["code"], "not_joined")
    }

    /// The join is answered when the media backend answers (the relay's
    /// hop and back); until then the session refuses a second join and any
    /// other media request, and nobody is told it joined.
    func testJoiningSessionRefusesMediaRequestsUntilTheBackendAnswers() {
        let (_, tb, _) = joined("bob@r1")
        backend.holdJoins = true
        let (c, t) = connect()
        _ = request(c, t, #"{"id":1,"type":"auth","token":"alice@r1"}"#)
        let sentBefore = t.sent.count
        core.received(#"{"id":2,"type":"join"}"#, from: c)
        XCTAssertEqual(t.sent.count, sentBefore, "no answer before the backend's")
        XCTAssertNil(tb.last("participant_joined"))
        let second = request(c, t, #"{"id":3,"type":"join"}"#)
        XCTAssertEqual(second["code"], "already_joined")
        XCTAssertEqual(second["id"], 3)
        XCTAssertEqual(second["message"]?.stringValue, "a join is in progress: wait for its answer")
        for (id, text) in [(4, #""type":"publish","tracks":[{"kind":"audio","codec":"opus","payloadType":111,"clockRate":48000}]"#),
                           (5, #""type":"subscribe","track":"bob/1001""#), (6, #""type":"leave""#)] {
            XCTAssertEqual(request(c, t, #"{"id":\#(id),\#(text)}"#)["code"], "not_joined", text)
        }
        XCTAssertEqual(request(c, t, #"{"id":7,"type":"ping"}"#)["type"], "ping", "ping is not a media request")
        XCTAssertEqual(backend.calls.filter { $0.hasPrefix("join r1 alice") }.count, 1)

        backend.answerHeldJoins()
        let reply = t.last("join")
        XCTAssertEqual(reply?["id"], 2)
        XCTAssertEqual(reply?["ok"], true)
        XCTAssertEqual(tb.last("participant_joined")?["participant"], "alice")
        XCTAssertEqual(request(c, t, #"{"id":8,"type":"publish","tracks":[{"kind":"audio","codec":"opus","payloadType":111,"clockRate":48000}]}"#)["ok"], true)
        XCTAssertNil(t.closed)
    }

    /// A connection that closes (or is kicked) while its join is on its way
    /// leaves the relay cleanly once the answer arrives; nobody is told it joined.
    func testConnectionClosedWhileJoiningLeavesTheRelay() {
        let (_, tb, _) = joined("bob@r1")
        backend.holdJoins = true
        let (c, t) = connect()
        _ = request(c, t, #"{"id":1,"type":"auth","token":"alice@r1"}"#)
        core.received(#"{"id":2,"type":"join"}"#, from: c)
        core.connectionClosed(c)
        XCTAssertFalse(backend.calls.contains("leave r1 alice"))
        backend.answerHeldJoins()
        XCTAssertTrue(backend.calls.contains("leave r1 alice"), "the participant the relay added is removed again")
        XCTAssertNil(tb.last("participant_joined"))
        XCTAssertNil(t.last("join"))
        XCTAssertEqual(calls.participantCount, 1)

        // Kicked while joining: the same.
        let (c2, t2) = connect()
        _ = request(c2, t2, #"{"id":1,"type":"auth","token":"carol@r1"}"#)
        core.received(#"{"id":2,"type":"join"}"#, from: c2)
        XCTAssertTrue(calls.kick(room: "r1", participant: "carol"))
        backend.answerHeldJoins()
        XCTAssertTrue(backend.calls.contains("leave r1 carol"))
        XCTAssertEqual(calls.participantCount, 1)

        // A new connection that resumed the session while the join was on its
        // way: the stale answer is undone; the session may join afresh.
        let (c3, t3) = connect()
        _ = request(c3, t3, #"{"id":1,"type":"auth","token":"dave@r1"}"#)
        core.received(#"{"id":2,"type":"join"}"#, from: c3)
        let (c4, t4) = connect()
        XCTAssertEqual(request(c4, t4, #"{"id":1,"type":"auth","token":"dave@r1"}"#)["resumed"], false)
        XCTAssertEqual(t3.closed?.code, 4004)
        backend.answerHeldJoins()
        XCTAssertTrue(backend.calls.contains("leave r1 dave"))
        XCTAssertNil(t4.last("join"))
        backend.holdJoins = false
        XCTAssertEqual(request(c4, t4, #"{"id":3,"type":"join"}"#)["ok"], true)
        XCTAssertEqual(calls.participantCount, 2)
    }

    func testViewerTokenCannotPublish() {
        let (c, t) = connect()
        _ = request(c, t, #"{"id":1,"type":"auth","token":"viewer1@r1"}"#)
        XCTAssertEqual(request(c, t, #"{"id":2,"type":"join","publish":true}"#)["code"], "forbidden")
        XCTAssertEqual(request(c, t, #"{"id":3,"type":"join","publish":false}"#)["ok"], true)
    }

    func testReconnectWithinGraceResumesSameMediaSession() {
        let (c1, _, r1) = joined("alice@r1")
        let (_, tb, _) = joined("bob@r1")
        core.connectionClosed(c1)
        XCTAssertNil(tb.last("participant_left"), "no one is told during the grace period")
        let (c2, t2) = connect()
        let a = request(c2, t2, #"{"id":1,"type":"auth","token":"alice@r1"}"#)
        XCTAssertEqual(a["resumed"], true)
        XCTAssertEqual(a["join"]?["srtp"], r1["srtp"], "same keys")
        XCTAssertEqual(a["join"]?["ssrcs"], r1["ssrcs"], "same SSRCs")
        scheduler.fireAll()  // the old grace timer is stale now
        XCTAssertNil(tb.last("participant_left"))
        XCTAssertFalse(backend.calls.contains("leave r1 alice"))
        XCTAssertEqual(backend.calls.filter { $0 == "join r1 alice" }.count, 1)
    }

    func testGraceExpiryRemovesParticipant() {
        let (c1, _, _) = joined("alice@r1")
        let (_, tb, _) = joined("bob@r1")
        core.connectionClosed(c1)
        scheduler.fireAll()
        XCTAssertEqual(tb.last("participant_left")?["reason"], "timeout")
        XCTAssertTrue(backend.calls.contains("leave r1 alice"))
        let (c2, t2) = connect()
        XCTAssertEqual(request(c2, t2, #"{"id":1,"type":"auth","token":"alice@r1"}"#)["resumed"], false)
    }

    func testSecondConnectionTakesOverTheSession() {
        let (_, t1, _) = joined("alice@r1")
        let (c2, t2) = connect()
        XCTAssertEqual(request(c2, t2, #"{"id":1,"type":"auth","token":"alice@r1"}"#)["resumed"], true)
        XCTAssertEqual(t1.closed?.code, 4004)
    }

    func testKickClosesAndRemoves() {
        let (_, ta, _) = joined("alice@r1")
        let (_, tb, _) = joined("bob@r1")
        XCTAssertTrue(calls.kick(room: "r1", participant: "alice"))
        XCTAssertEqual(ta.closed?.code, 4005)
        XCTAssertEqual(tb.last("participant_left")?["reason"], "kicked")
        XCTAssertFalse(calls.kick(room: "r1", participant: "alice"))
        let rooms = calls.roomsJSON()
        XCTAssertEqual(rooms["rooms"]?.arrayValue?.first?["participants"]?.arrayValue?.count, 1)
    }

    // MARK: Sessions keyed by user and device

    func testRoomlessTokenAuthenticatesAndThenJoinsANamedRoom() {
        let (c, t) = connect()
        let a = request(c, t, #"{"id":1,"type":"auth","token":"carol@*"}"#)
        XCTAssertEqual(a["ok"], true)
        XCTAssertEqual(a["participant"], "carol")
        XCTAssertEqual(a["device"], "default")
        XCTAssertNil(a["room"], "no room yet")
        XCTAssertEqual(a["resumed"], false)
        XCTAssertEqual(request(c, t, #"{"id":2,"type":"ping"}"#)["ok"], true, "a chat-only session is a session")
        XCTAssertEqual(request(c, t, #"{"id":3,"type":"join"}"#)["code"], "bad_request", "join must name the room")
        let j = request(c, t, #"{"id":4,"type":"join","room":"r7"}"#)
        XCTAssertEqual(j["ok"], true, "\(j)")
        XCTAssertEqual(j["room"], "r7")
        XCTAssertEqual(backend.calls, ["join r7 carol"])
        XCTAssertNil(t.closed)
    }

    func testRoomBoundTokenCannotJoinAnotherRoomUnlessAdmin() {
        let (c, t) = connect()
        _ = request(c, t, #"{"id":1,"type":"auth","token":"alice@r1"}"#)
        XCTAssertEqual(request(c, t, #"{"id":2,"type":"join","room":"r2"}"#)["code"], "wrong_room")
        XCTAssertEqual(t.closed?.code, 4003)
        XCTAssertTrue(backend.calls.isEmpty)

        let (c2, t2) = connect()
        XCTAssertEqual(request(c2, t2, #"{"id":1,"type":"auth","token":"admin1@r1"}"#)["room"], "r1")
        XCTAssertEqual(request(c2, t2, #"{"id":2,"type":"join","room":"r2"}"#)["room"], "r2", "an administrator joins any room")
        XCTAssertEqual(backend.calls, ["join r2 admin1"])
    }

    func testTwoDevicesOfOneUserAreConnectedAndANewConnectionOfADeviceTakesItOver() {
        let (cp, tp) = connect()
        XCTAssertEqual(request(cp, tp, #"{"id":1,"type":"auth","token":"alice@*","device":"phone"}"#)["device"], "phone")
        let (cl, tl) = connect()
        XCTAssertEqual(request(cl, tl, #"{"id":1,"type":"auth","token":"alice@*","device":"laptop"}"#)["device"], "laptop")
        XCTAssertNil(tp.closed)
        XCTAssertNil(tl.closed)
        XCTAssertEqual(presence.devices(of: "alice").map(\.device), ["laptop", "phone"])
        XCTAssertEqual(presence.devices(of: "alice").map(\.connection), [cl, cp])
        XCTAssertEqual(presence.online(among: ["alice", "bob"]), ["alice"])

        // The phone joins a call; the laptop cannot join the same room as well.
        XCTAssertEqual(request(cp, tp, #"{"id":2,"type":"join","room":"r1"}"#)["ok"], true)
        XCTAssertEqual(request(cl, tl, #"{"id":2,"type":"join","room":"r1"}"#)["code"], "already_joined")

        // A third connection of the phone takes the phone's session (and call) over.
        let (c3, t3) = connect()
        let a = request(c3, t3, #"{"id":1,"type":"auth","token":"alice@*","device":"phone"}"#)
        XCTAssertEqual(a["resumed"], true)
        XCTAssertEqual(a["join"]?["room"], "r1")
        XCTAssertEqual(tp.closed?.code, 4004)
        XCTAssertNil(tl.closed, "the laptop is not affected")
        core.connectionClosed(cp)
        XCTAssertEqual(presence.devices(of: "alice").map(\.connection), [cl, c3])

        // The laptop goes away: nothing held its session, so it ends at once.
        core.connectionClosed(cl)
        XCTAssertEqual(presence.devices(of: "alice").map(\.device), ["phone"])
        XCTAssertNil(core.session(SessionKey(user: "alice", device: "laptop")))
        XCTAssertNotNil(core.session(SessionKey(user: "alice", device: "phone")))
        core.connectionClosed(c3)
        XCTAssertFalse(presence.isOnline("alice"))
        XCTAssertNotNil(core.session(SessionKey(user: "alice", device: "phone")), "the call holds it through the grace period")
    }

    /// A feature that answers `echo.later` only when the test says so, as
    /// one waiting for an asynchronous backend would.
    final class LaterFeature: SignallingFeature {
        unowned let core: SignallingCore
        var waiting: [(SignallingSession, SignallingReply, ClientRequest)] = []
        var ended: [String] = []
        init(core: SignallingCore) { self.core = core }
        var messageTypes: [String] { ["echo.later"] }
        func handle(_ request: ClientRequest, from session: SignallingSession, reply: SignallingReply) {
            waiting.append((session, reply, request))
        }
        func sessionEnded(_ session: SignallingSession, reason: String) { ended.append("\(session.key) \(reason)") }
        /// Answers everything waiting as a completion from another thread does.
        func answerLater() {
            let w = waiting
            waiting = []
            for (s, reply, r) in w {
                let answer = core.onSignallingThread { (text: JSONValue) in reply.ok(["user": .string(s.user), "echo": text]) }
                answer(r.fields["text"] ?? .null)
            }
        }
    }

    func testRegisteredFeatureReceivesItsTypesAndItsLaterReplyReachesTheClient() {
        let (c, t) = connect()
        _ = request(c, t, #"{"id":1,"type":"auth","token":"alice@*"}"#)
        XCTAssertEqual(request(c, t, #"{"id":2,"type":"echo.later","text":"hi"}"#)["code"], "unknown_type", "not registered yet")

        let feature = LaterFeature(core: core)
        core.register(feature)
        let before = t.sent.count
        core.received(#"{"id":3,"type":"echo.later","text":"hi"}"#, from: c)
        XCTAssertEqual(feature.waiting.count, 1)
        XCTAssertEqual(t.sent.count, before, "no answer yet")
        XCTAssertEqual(request(c, t, #"{"id":4,"type":"ping"}"#)["id"], 4, "the connection is served meanwhile")

        let posted = scheduler.posted
        feature.answerLater()
        XCTAssertEqual(scheduler.posted, posted + 1, "the answer came back through the signalling thread's scheduler")
        XCTAssertEqual(t.sent.count, before + 2)
        let r = t.sent.last!
        XCTAssertEqual(r["id"], 3)
        XCTAssertEqual(r["type"], "echo.later")
        XCTAssertEqual(r["ok"], true)
        XCTAssertEqual(r["echo"], "hi")
        XCTAssertEqual(r["user"], "alice")

        // An answer for a connection that is gone goes nowhere; the feature hears the session end.
        core.received(#"{"id":5,"type":"echo.later"}"#, from: c)
        core.connectionClosed(c)
        feature.answerLater()
        XCTAssertEqual(t.sent.last?["id"], 3)
        XCTAssertEqual(feature.ended, ["alice/default closed"])
    }

    func testUnknownTypeIsRefusedAndBeforeAuthCloses() {
        let (c, t) = connect()
        let r = request(c, t, #"{"id":1,"type":"chat.send"}"#)
        XCTAssertEqual(r["code"], "unknown_type")
        XCTAssertEqual(r["id"], 1)
        XCTAssertEqual(t.closed?.code, 4001)
    }

    /// Holds what is posted to it until the test runs it, as a busy signalling loop would.
    final class HeldScheduler: SignallingScheduler, @unchecked Sendable {
        private let lock = NSLock()
        private var posted: [@Sendable () -> Void] = []
        func schedule(afterSeconds s: Double, _ body: @escaping () -> Void) {}
        func execute(_ task: @escaping @Sendable () -> Void) -> Bool { lock.withLock { posted.append(task) }; return true }
        /// Runs what was posted; returns how many hops that was.
        func runPosted() -> Int {
            let p = lock.withLock { defer { posted = [] }; return posted }
            p.forEach { $0() }
            return p.count
        }
    }

    func testCompletionsFromOtherThreadsShareOneHopAndKeepTheirOrder() {
        let held = HeldScheduler()
        let core = SignallingCore(verifier: Verifier(), scheduler: held)
        nonisolated(unsafe) var ran: [Int] = []  // appended on the "signalling thread": the test's, in runPosted
        let completion = core.onSignallingThread { (i: Int) in ran.append(i) }
        // A store batch's completions, called on its writer thread.
        let done = DispatchSemaphore(value: 0)
        Thread { for i in 1...5 { completion(i) }; done.signal() }.start()
        done.wait()
        XCTAssertEqual(ran, [])
        XCTAssertEqual(held.runPosted(), 1, "one hop for the five")
        XCTAssertEqual(ran, [1, 2, 3, 4, 5])
        // Once they ran, the next completion posts again.
        completion(6)
        XCTAssertEqual(held.runPosted(), 1)
        XCTAssertEqual(ran, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(held.runPosted(), 0)
    }
}
