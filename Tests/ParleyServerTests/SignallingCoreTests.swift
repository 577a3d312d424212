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

    final class Scheduler: SignallingScheduler {
        var pending: [(Double, () -> Void)] = []
        func schedule(afterSeconds s: Double, _ body: @escaping () -> Void) { pending.append((s, body)) }
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
                  completion: @escaping (Result<MediaGrant, SignallingError>) -> Void) {
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

    /// Tokens of the form `sub@room` (or `expired`, `forged`) so these tests need no JWT.
    struct Verifier: TokenVerifying {
        func verify(_ token: String) -> Result<AuthClaims, AuthFailure> {
            if token == "expired" { return .failure(.expired) }
            if token == "forged" { return .failure(.badSignature) }
            let p = token.split(separator: "@")
            guard p.count == 2 else { return .failure(.malformed("not sub@room")) }
            return .success(AuthClaims(subject: String(p[0]), room: String(p[1]), expiresAt: 2_000_000_000, canPublish: !p[0].hasPrefix("viewer")))
        }
    }

    var backend: Backend!
    var scheduler: Scheduler!
    var core: SignallingCore!
    var nextID: UInt64 = 0

    override func setUp() {
        backend = Backend()
        scheduler = Scheduler()
        core = SignallingCore(backend: backend, verifier: Verifier(), scheduler: scheduler, graceSeconds: 15,
                              logger: Logger(label: "test", level: .error), clock: { 1_700_000_000 })
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
        let msgs: [ClientMessage] = [
            ClientMessage(id: 1, request: .auth(token: "t", room: "r")),
            ClientMessage(id: "a", request: .join(room: nil, publish: true, subscribe: false, suite: "AEAD_AES_128_GCM")),
            ClientMessage(id: 3, request: .publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)])),
            ClientMessage(id: 4, request: .subscribe(track: "bob/7")),
            ClientMessage(id: 5, request: .mute(track: "bob/7", muted: false)),
            ClientMessage(id: 6, request: .ping),
            ClientMessage(id: 7, request: .leave),
        ]
        for m in msgs { XCTAssertEqual(try ClientMessage.decode(m.encoded), m) }
    }

    func testMalformedMessagesAreAnsweredWithErrors() {
        let table: [(String, SignallingErrorCode)] = [
            ("not json", .badRequest),
            ("[1,2]", .badRequest),
            (#"{"type":"ping"}"#, .badRequest),
            (#"{"id":{},"type":"ping"}"#, .badRequest),
            (#"{"id":1,"type":"dance"}"#, .unknownType),
            (#"{"id":1,"type":"subscribe"}"#, .badRequest),
            (#"{"id":1,"type":"publish","tracks":[{"kind":"audio","codec":"opus","payloadType":200,"clockRate":48000}]}"#, .badRequest),
            (#"{"id":1,"type":"join","publish":"yes"}"#, .badRequest),
            (String(repeating: "[", count: 100) + String(repeating: "]", count: 100), .badRequest),
        ]
        for (text, code) in table {
            XCTAssertThrowsError(try ClientMessage.decode(text), text) { e in
                XCTAssertEqual((e as? SignallingError)?.code, code, text)
            }
        }
        // On a live authenticated connection a bad message gets an error reply and the connection stays.
        let (c, t, _) = joined("alice@r1")
        let r = request(c, t, #"{"id":9,"type":"subscribe","track":17}"#)
        XCTAssertEqual(r["type"], "error")
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
        XCTAssertEqual(core.participantCount, 1)

        // Kicked while joining: the same.
        let (c2, t2) = connect()
        _ = request(c2, t2, #"{"id":1,"type":"auth","token":"carol@r1"}"#)
        core.received(#"{"id":2,"type":"join"}"#, from: c2)
        XCTAssertTrue(core.kick(room: "r1", participant: "carol"))
        backend.answerHeldJoins()
        XCTAssertTrue(backend.calls.contains("leave r1 carol"))
        XCTAssertEqual(core.participantCount, 1)

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
        XCTAssertEqual(core.participantCount, 2)
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
        XCTAssertTrue(core.kick(room: "r1", participant: "alice"))
        XCTAssertEqual(ta.closed?.code, 4005)
        XCTAssertEqual(tb.last("participant_left")?["reason"], "kicked")
        XCTAssertFalse(core.kick(room: "r1", participant: "alice"))
        let rooms = core.roomsJSON()
        XCTAssertEqual(rooms["rooms"]?.arrayValue?.first?["participants"]?.arrayValue?.count, 1)
    }
}
