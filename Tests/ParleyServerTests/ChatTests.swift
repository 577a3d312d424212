import XCTest
import Foundation
import ParleyCore
import ParleyIO
import ParleyWeb
import ParleyTestSupport
@testable import ParleyServer
import ParleyChat
@testable import ParleyProtocol
@testable import ParleyAuth

/// The daemon's front end in-process on loopback (signalling, the chat
/// feature, DATA-DIR/chat.db) and chat devices connected to it over real
/// WebSocket sessions.
class ChatTestCase: XCTestCase {
    var server: RelayServerFixture!

    func start(_ configure: (inout ServerConfig) -> Void = { _ in }) throws {
        server = try RelayServerFixture(loops: 2, configure: configure)
    }

    override func tearDown() { server?.stop() }

    /// A roomless token (valid for chat) for `user`.
    func token(_ user: String) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return JWT.sign(TokenClaims(subject: user, room: nil, issuedAt: now - 10, expiresAt: now + 600), secret: server.secret)
    }

    /// The attachment routes on the server's router, with a blocking pool of their own (the caller shuts it down).
    func installMediaRoutes(_ configure: (inout ServerConfig) -> Void) throws -> BlockingPool {
        let pool = BlockingPool(threads: 2)
        var config = ServerConfig()
        config.dataDir = server.dataDir
        configure(&config)
        try ChatMediaRoutes.install(on: server.front.router, config: config, pool: pool, chat: server.front.chat!)
        return pool
    }

    /// A connected, authenticated device that has finished its connect-time sync.
    func device(_ user: String, _ device: String = "phone", waitForSync: Bool = true) throws -> BlockingSignallingClient {
        let c = try server.connect()
        try c.call(.auth(token: token(user), room: nil, device: device))
        if waitForSync { _ = try c.nextEvent("sync.done") }
        return c
    }
}

/// Chat over real WebSocket sessions on loopback: 1:1 messages, receipts, sync, limits.
final class ChatTests: ChatTestCase {

    func testOnlineMessageIsSentThenDeliveredToEveryDeviceThenDeliveredAndReadReceipts() throws {
        try start()
        let alice = try device("alice")
        let bobPhone = try device("bob", "phone"), bobLaptop = try device("bob", "laptop")

        let ack = try alice.call(.chatSend(to: "bob", clientId: "c1", text: "hello bob"))
        XCTAssertEqual(ack["status"], "sent")
        XCTAssertEqual(ack["seq"], 1)
        let conversation = Int64(ack["conversation"]!.intValue!)
        for d in [bobPhone, bobLaptop] {
            let m = try d.nextEvent("chat.message")
            XCTAssertEqual(m["text"], "hello bob")
            XCTAssertEqual(m["from"], "alice")
            XCTAssertEqual(m["fromDevice"], "phone")
            XCTAssertEqual(m["to"], "bob")
            XCTAssertEqual(m["seq"], 1)
            XCTAssertEqual(m["messageId"], ack["messageId"])
        }

        try bobLaptop.call(.chatAck(conversation: conversation, seq: 1))
        let delivered = try alice.nextEvent("chat.receipt")
        XCTAssertEqual(delivered["status"], "delivered")
        XCTAssertEqual(delivered["user"], "bob")
        XCTAssertEqual(delivered["seq"], 1)
        // The second device's ack moves nothing: no second receipt.
        try bobPhone.call(.chatAck(conversation: conversation, seq: 1))
        try bobPhone.call(.chatRead(conversation: conversation, seq: 1))
        let read = try alice.nextEvent("chat.receipt")
        XCTAssertEqual(read["status"], "read")
        XCTAssertEqual(read["seq"], 1)

        // A reply goes the other way in the same conversation, with the next seq.
        let back = try bobPhone.call(.chatSend(to: "alice", clientId: "b1", text: "hi alice"))
        XCTAssertEqual(back["conversation"]?.intValue, Int(conversation))
        XCTAssertEqual(back["seq"], 2)
        XCTAssertEqual(try alice.nextEvent("chat.message")["text"], "hi alice")
        // The sending device does not get its own message back; the user's other device does.
        XCTAssertEqual(try bobLaptop.nextEvent("chat.message")["text"], "hi alice")
        XCTAssertEqual(try alice.call(.ping)["ok"], true)
        XCTAssertFalse(alice.takeQueued().contains { $0["type"] == "chat.receipt" }, "no receipt for the second, unmoving ack")
        XCTAssertFalse(bobPhone.takeQueued().contains { $0["type"] == "chat.message" })
    }

    /// A refused send or ack changes nothing before it is refused, so the
    /// store writer never has to run its batch again (a client could
    /// otherwise make it do so at will): refusals cost no reruns.
    func testRefusedSendsAndAcksMakeTheWriterRunNoBatchTwice() throws {
        try start()
        let writer = server.front.chat!.writer
        let before = writer.statistics.reruns
        let mallory = try device("mallory")
        for i in 0..<5 {
            // A first message to a new user, with an attachment that does not exist.
            XCTAssertEqual(try mallory.request(.chatSend(to: "victim\(i)", clientId: "x\(i)", text: "x", attachments: ["nope"]))["code"],
                           "bad_request")
            // An ack with a receipt cursor, for a conversation mallory is not in.
            XCTAssertEqual(try mallory.request(.chatAck(conversation: 999_999, seq: 1, receipt: Int64(i + 1)))["code"], "not_member")
        }
        XCTAssertEqual(writer.statistics.reruns, before, "no refusal reran a batch")
        // The refused first message created no conversation: the first one that is stored does, at seq 1.
        let sent = try mallory.call(.chatSend(to: "victim0", clientId: "ok", text: "hello"))
        XCTAssertEqual(sent["seq"]?.intValue, 1)
    }

    func testOneAckForSeveralConversationsMovesEachAndTellsEachSender() throws {
        try start()
        let alice = try device("alice"), carol = try device("carol"), bob = try device("bob")
        let a = Int64(try alice.call(.chatSend(to: "bob", clientId: "a1", text: "from alice"))["conversation"]!.intValue!)
        _ = try alice.call(.chatSend(to: "bob", clientId: "a2", text: "again from alice"))
        let c = Int64(try carol.call(.chatSend(to: "bob", clientId: "c1", text: "from carol"))["conversation"]!.intValue!)
        for _ in 0..<3 { _ = try bob.nextEvent("chat.message") }

        // Not a member of one of them: refused, and none is applied.
        let mallory = try device("mallory")
        let other = Int64(try mallory.call(.chatSend(to: "dave", clientId: "m1", text: "x"))["conversation"]!.intValue!)
        XCTAssertEqual(try bob.request(.chatAck([ChatAck(conversation: a, seq: 2), ChatAck(conversation: other, seq: 1)]))["code"], "not_member")
        XCTAssertEqual(try bob.request(ClientRequest(type: "chat.ack", fields: ["acks": .array([])]))["code"], "bad_request")
        XCTAssertEqual(try bob.request(ClientRequest(type: "chat.ack", fields: [
            "acks": .array(Array(repeating: ["conversation": 1, "seq": 1], count: ChatRequest.maxAcks + 1))]))["code"], "bad_request")

        // One request, two conversations (one named twice: its highest seq counts).
        try bob.call(.chatAck([ChatAck(conversation: a, seq: 1), ChatAck(conversation: c, seq: 1), ChatAck(conversation: a, seq: 2)]))
        let toAlice = try alice.nextEvent("chat.receipt")
        XCTAssertEqual(toAlice["conversation"]?.intValue, Int(a))
        XCTAssertEqual(toAlice["status"], "delivered")
        XCTAssertEqual(toAlice["seq"], 2)
        let toCarol = try carol.nextEvent("chat.receipt")
        XCTAssertEqual(toCarol["conversation"]?.intValue, Int(c))
        XCTAssertEqual(toCarol["seq"], 1)
        XCTAssertEqual(try alice.call(.ping)["ok"], true)
        XCTAssertFalse(alice.takeQueued().contains { $0["type"] == "chat.receipt" }, "one receipt per moved mark")

        // The device's cursors moved: a new connection of it syncs nothing.
        bob.close()
        let bob2 = try device("bob", waitForSync: false)
        let done = try bob2.nextEvent("sync.done")
        XCTAssertEqual(done["messages"], 0)
    }

    func testResendingAClientIdReturnsTheSameAckAndStoresNothing() throws {
        try start()
        let alice = try device("alice"), bob = try device("bob")
        let first = try alice.call(.chatSend(to: "bob", clientId: "same", text: "once"))
        let again = try alice.call(.chatSend(to: "bob", clientId: "same", text: "once"))
        for k in ["messageId", "conversation", "seq", "sentAt", "status"] { XCTAssertEqual(first[k], again[k], k) }
        XCTAssertEqual(again["duplicate"], true)
        let next = try alice.call(.chatSend(to: "bob", clientId: "other", text: "twice"))
        XCTAssertEqual(next["seq"], 2)
        XCTAssertEqual(try bob.nextEvent("chat.message")["seq"], 1)
        XCTAssertEqual(try bob.nextEvent("chat.message")["seq"], 2, "the resend was not delivered again")
    }

    func testOfflineMessagesFlowInOrderOnConnectAndReceiptsReachTheOfflineSender() throws {
        try start()
        let alice = try device("alice")
        var conversation: Int64 = 0
        for i in 1...5 {
            conversation = Int64(try alice.call(.chatSend(to: "bob", clientId: "m\(i)", text: "msg \(i)"))["conversation"]!.intValue!)
        }
        alice.close()

        let bob = try device("bob", waitForSync: false)
        for i in 1...5 {
            let m = try bob.nextEvent()
            XCTAssertEqual(m["type"], "chat.message")
            XCTAssertEqual(m["seq"]?.intValue, i)
            XCTAssertEqual(m["text"]?.stringValue, "msg \(i)")
        }
        let done = try bob.nextEvent()
        XCTAssertEqual(done["type"], "sync.done")
        XCTAssertEqual(done["messages"], 5)
        try bob.call(.chatAck(conversation: conversation, seq: 5))
        try bob.call(.chatRead(conversation: conversation, seq: 3))
        bob.close()

        // Acked messages do not come again; the receipts wait for alice.
        let bob2 = try device("bob", waitForSync: false)
        XCTAssertEqual(try bob2.nextEvent()["type"], "sync.done")
        let alice2 = try device("alice", waitForSync: false)
        var receipts: [String: Int] = [:]
        while true {
            let e = try alice2.nextEvent()
            if e["type"] == "sync.done" { break }
            XCTAssertEqual(e["type"], "chat.receipt")
            receipts[e["status"]!.stringValue!] = e["seq"]!.intValue!
            try alice2.call(.chatAck(conversation: conversation, seq: 0, receipt: Int64(e["receiptId"]!.intValue!)))
        }
        XCTAssertEqual(receipts, ["delivered": 5, "read": 3])
        alice2.close()
        // Acknowledged receipts are not sent again.
        let alice3 = try device("alice", waitForSync: false)
        XCTAssertEqual(try alice3.nextEvent()["type"], "sync.done")
    }

    func testSyncFromACursorAndHistoryPaging() throws {
        try start()
        let alice = try device("alice")
        var conversation: Int64 = 0
        for i in 1...6 {
            conversation = Int64(try alice.call(.chatSend(to: "bob", clientId: "m\(i)", text: "msg \(i)"))["conversation"]!.intValue!)
        }
        // A reinstalled device knows it has up to seq 4.
        let bob = try device("bob", "tablet")  // its connect-time sync sent all six; it acks none of them
        XCTAssertEqual(bob.takeQueued().count, 6)
        try bob.call(.chatSync(cursors: [conversation: 4]))
        XCTAssertEqual(try bob.nextEvent()["seq"], 5)
        XCTAssertEqual(try bob.nextEvent()["seq"], 6)
        XCTAssertEqual(try bob.nextEvent()["type"], "sync.done")

        let page = try bob.call(.chatHistory(conversation: conversation, before: 5, limit: 3))
        XCTAssertEqual(page["messages"]?.arrayValue?.compactMap { $0["seq"]?.intValue }, [4, 3, 2])
        let rest = try bob.call(.chatHistory(conversation: conversation, before: 2, limit: 3))
        XCTAssertEqual(rest["messages"]?.arrayValue?.compactMap { $0["text"]?.stringValue }, ["msg 1"])
        // Someone else's conversation is not for mallory.
        let mallory = try device("mallory")
        XCTAssertEqual(try mallory.request(.chatHistory(conversation: conversation))["code"], "not_member")
        XCTAssertEqual(try mallory.request(.chatAck(conversation: conversation, seq: 6))["code"], "not_member")
        XCTAssertEqual(try mallory.request(.chatRead(conversation: 999, seq: 1))["code"], "not_member")
    }

    func testASyncLargerThanAPageWaitsForTheAckOfEachPage() throws {
        try start { $0.chatSyncPage = 3 }
        let alice = try device("alice")
        var conversation: Int64 = 0
        for i in 1...7 {
            conversation = Int64(try alice.call(.chatSend(to: "bob", clientId: "m\(i)", text: "\(i)"))["conversation"]!.intValue!)
        }
        let bob = try device("bob", waitForSync: false)
        var seqs: [Int] = []
        while true {
            let e = try bob.nextEvent()
            if e["type"] == "sync.done" { XCTAssertEqual(e["messages"], 7); break }
            seqs.append(e["seq"]!.intValue!)
            if e["ack"] == true {
                XCTAssertEqual(seqs.count % 3, 0, "only the last message of a full page asks for the ack")
                XCTAssertEqual(try bob.call(.ping)["ok"], true)
                XCTAssertTrue(bob.takeQueued().isEmpty, "nothing more before the ack")
                try bob.call(.chatAck(conversation: conversation, seq: Int64(seqs.last!)))
            }
        }
        XCTAssertEqual(seqs, Array(1...7))
        // While it synced nothing came twice; after it, messages are live.
        try alice.call(.chatSend(to: "bob", clientId: "m8", text: "8"))
        XCTAssertEqual(try bob.nextEvent("chat.message")["seq"], 8)
    }

    func testOversizeTextAndTheSendRateAreRefusedWithoutClosing() throws {
        try start {
            $0.chatMaxMessageBytes = 1000
            $0.chatRate = 1
            $0.chatBurst = 2
        }
        let alice = try device("alice")
        let big = try alice.request(.chatSend(to: "bob", clientId: "big", text: String(repeating: "é", count: 501)))
        XCTAssertEqual(big["code"], "too_large")
        XCTAssertEqual(try alice.call(.chatSend(to: "bob", clientId: "ok1", text: String(repeating: "x", count: 1000)))["seq"], 1)
        XCTAssertEqual(try alice.call(.chatSend(to: "bob", clientId: "ok2", text: "x"))["seq"], 2)
        let limited = try alice.request(.chatSend(to: "bob", clientId: "ok3", text: "x"))
        XCTAssertEqual(limited["code"], "rate_limited")
        XCTAssertGreaterThan(limited["retryAfter"]?.intValue ?? 0, 0)
        // The budget is the user's, over all devices.
        let laptop = try device("alice", "laptop")
        XCTAssertEqual(try laptop.request(.chatSend(to: "bob", clientId: "ok4", text: "x"))["code"], "rate_limited")
        XCTAssertEqual(try alice.call(.ping)["ok"], true, "still connected")
        XCTAssertEqual(try alice.request(.chatSend(to: "alice", clientId: "me", text: "x"))["code"], "bad_request")
    }

    func testAnOfflineRecipientsBacklogIsBounded() throws {
        try start { $0.chatMaxUndelivered = 2 }
        let carol = try device("carol")
        XCTAssertEqual(try carol.call(.chatSend(to: "bob", clientId: "c1", text: "x"))["seq"], 1)
        let conversation = Int64(try carol.call(.chatSend(to: "bob", clientId: "c2", text: "x"))["conversation"]!.intValue!)
        XCTAssertEqual(try carol.request(.chatSend(to: "bob", clientId: "c3", text: "x"))["code"], "backlog_full")
        // Bob catches up: there is room again.
        let bob = try device("bob")
        try bob.call(.chatAck(conversation: conversation, seq: 2))
        XCTAssertEqual(try carol.call(.chatSend(to: "bob", clientId: "c3", text: "x"))["seq"], 3)
    }

    func testDevicesBeyondTheLimitGetNoChat() throws {
        try start { $0.chatMaxDevices = 1 }
        let alice = try device("alice")
        let second = try server.connect()
        let auth = try second.call(.auth(token: token("alice"), room: nil, device: "second"))
        XCTAssertEqual(auth["chat"]?["refused"], "too_many_devices")
        XCTAssertEqual(try second.request(.chatSend(to: "bob", clientId: "x", text: "x"))["code"], "too_many_devices")
        XCTAssertEqual(try alice.call(.chatSend(to: "bob", clientId: "y", text: "y"))["status"], "sent")
    }
}

/// Groups: administration, fan-out, per-member receipts summed for the sender.
final class ChatGroupTests: ChatTestCase {
    func testAGroupMessageFansOutToFiftyMembersAndTheSenderSeesReceiptsAddUp() throws {
        try start { $0.signallingBurst = 1000 }
        let others = (1...49).map { String(format: "m%02d", $0) }
        let alice = try device("alice")
        let members = try others.map { try device($0) }
        let created = try alice.call(.chatCreateGroup(name: "fifty", members: others))
        let group = Int64(created["conversation"]!.intValue!)
        XCTAssertEqual(created["seq"], 1)
        let sent = try alice.call(.chatSend(group: group, clientId: "g1", text: "hello all"))
        XCTAssertEqual(sent["seq"], 2)
        for m in members {
            let event = try m.nextEvent("chat.message")
            XCTAssertEqual(event["event"]?["action"], "created")
            XCTAssertEqual(event["event"]?["members"]?.arrayValue?.count, 50)
            let message = try m.nextEvent("chat.message")
            XCTAssertEqual(message["text"], "hello all")
            XCTAssertEqual(message["group"], true)
            XCTAssertEqual(message["seq"], 2)
        }
        // Each member's ack is one more "delivered" on alice's message.
        for (i, m) in members.enumerated() {
            try m.call(.chatAck(conversation: group, seq: 2))
            let r = try alice.nextEvent("chat.receipt")
            XCTAssertEqual(r["user"]?.stringValue, others[i])
            XCTAssertEqual(r["summary"]?["seq"], 2)
            XCTAssertEqual(r["summary"]?["delivered"]?.intValue, i + 1)
            XCTAssertEqual(r["summary"]?["of"], 49)
        }
        try members[0].call(.chatRead(conversation: group, seq: 2))
        XCTAssertEqual(try alice.nextEvent("chat.receipt")["summary"]?["read"], 1)

        let list = try members[3].call(.chatMembers(group))
        XCTAssertEqual(list["name"], "fifty")
        let rows = list["members"]?.arrayValue ?? []
        XCTAssertEqual(rows.count, 50)
        XCTAssertEqual(rows.filter { $0["admin"] == true }.compactMap { $0["user"]?.stringValue }, ["alice"])
        XCTAssertEqual(rows.filter { $0["delivered"] == 2 }.count, 49)
        // Receipts went to the sender only, not to every member.
        XCTAssertEqual(try members[5].call(.ping)["ok"], true)
        XCTAssertFalse(members[5].takeQueued().contains { $0["type"] == "chat.receipt" })
    }

    func testOnlyAdministratorsChangeAGroupAndChangesReachMembersAsMessages() throws {
        try start { $0.chatMaxGroupMembers = 4 }
        let alice = try device("alice"), bob = try device("bob")
        let group = Int64(try alice.call(.chatCreateGroup(name: "team", members: ["bob"]))["conversation"]!.intValue!)
        XCTAssertEqual(try bob.nextEvent("chat.message")["event"]?["action"], "created")

        XCTAssertEqual(try bob.request(.chatChangeGroup(group, .rename("mine")))["code"], "forbidden")
        XCTAssertEqual(try bob.request(.chatChangeGroup(group, .add(["eve"])))["code"], "forbidden")
        XCTAssertEqual(try alice.request(.chatChangeGroup(group, .add(["carol", "dave", "eve"])))["code"], "group_full")
        try alice.call(.chatChangeGroup(group, .rename("the team")))
        XCTAssertEqual(try bob.nextEvent("chat.message")["event"]?["name"], "the team")
        try alice.call(.chatChangeGroup(group, .add(["carol"])))
        XCTAssertEqual(try bob.nextEvent("chat.message")["event"]?["members"], ["carol"])

        // Carol was offline: she gets the group from the change that added her on.
        let carol = try device("carol", waitForSync: false)
        let first = try carol.nextEvent()
        XCTAssertEqual(first["event"]?["action"], "added")
        XCTAssertEqual(try carol.nextEvent()["type"], "sync.done")
        XCTAssertEqual(try carol.call(.chatHistory(conversation: group))["messages"]?.arrayValue?.count, 1)

        try alice.call(.chatChangeGroup(group, .remove(["bob"])))
        XCTAssertEqual(try bob.nextEvent("chat.message")["event"]?["action"], "removed", "the removed member hears of it")
        XCTAssertEqual(try bob.request(.chatSend(group: group, clientId: "late", text: "x"))["code"], "not_member")
        // The last administrator leaves: the group keeps one.
        XCTAssertEqual(try carol.nextEvent("chat.message")["event"]?["members"], ["bob"])
        try alice.call(.chatChangeGroup(group, .leave))
        XCTAssertEqual(try carol.nextEvent("chat.message")["event"]?["action"], "left")
        let list = try carol.call(.chatMembers(group))
        XCTAssertEqual(list["members"]?.arrayValue?.compactMap { $0["user"]?.stringValue }, ["carol"])
        XCTAssertEqual(list["members"]?.arrayValue?.first?["admin"], true)
        XCTAssertEqual(try carol.request(.chatMembers(999))["code"], "not_member")
    }
}

/// Presence to contacts, last seen and its privacy setting, typing.
final class ChatPresenceTests: ChatTestCase {
    /// Sends one message so that alice and bob share a conversation; returns it.
    func converse(_ alice: BlockingSignallingClient, _ to: String) throws -> Int64 {
        Int64(try alice.call(.chatSend(to: to, clientId: "hello-\(to)", text: "hello"))["conversation"]!.intValue!)
    }

    func testContactsAreToldOnlineAtOnceAndOfflineAfterTheDebounceWithLastSeen() throws {
        try start { $0.chatPresenceDebounceMs = 0 }
        let alice = try device("alice"), carol = try device("carol")
        _ = try converse(alice, "bob")
        let bob = try device("bob")
        let online = try alice.nextEvent("chat.presence")
        XCTAssertEqual(online["user"], "bob")
        XCTAssertEqual(online["online"], true)
        bob.close()
        let offline = try alice.nextEvent("chat.presence")
        XCTAssertEqual(offline["online"], false)
        let lastSeen = try XCTUnwrap(offline["lastSeen"]?.intValue)

        let seen = try alice.call(.chatPresence(["bob", "carol"]))["users"]?.arrayValue ?? []
        XCTAssertEqual(seen.first?["online"], false)
        XCTAssertEqual(seen.first?["lastSeen"]?.intValue, lastSeen)
        XCTAssertEqual(seen.last?["hidden"], true, "carol shares no conversation with alice")
        XCTAssertEqual(try carol.call(.chatPresence(["bob"]))["users"]?.arrayValue?.first?["hidden"], true)
        XCTAssertFalse(carol.takeQueued().contains { $0["type"] == "chat.presence" }, "carol is nobody's contact")
    }

    func testAReconnectWithinTheDebounceTellsNobodyAndPrivacyHidesPresence() throws {
        try start { $0.chatPresenceDebounceMs = 600_000 }
        let alice = try device("alice")
        _ = try converse(alice, "bob")
        let bob = try device("bob")
        XCTAssertEqual(try alice.nextEvent("chat.presence")["online"], true)
        bob.close()
        let bob2 = try device("bob")
        try bob2.call(.chatSend(to: "alice", clientId: "back", text: "back"))
        XCTAssertEqual(try alice.nextEvent("chat.message")["text"], "back")
        XCTAssertFalse(alice.takeQueued().contains { $0["type"] == "chat.presence" }, "the flap told alice nothing")

        XCTAssertEqual(try bob2.call(.chatPrivacy(lastSeen: .nobody))["lastSeen"], "nobody")
        XCTAssertEqual(try alice.call(.chatPresence(["bob"]))["users"]?.arrayValue?.first?["hidden"], true)
        XCTAssertEqual(try alice.request(.chatPrivacy(lastSeen: .init(rawValue: "contacts")!))["ok"], true)
        XCTAssertEqual(try alice.request(ClientRequest(type: "chat.privacy", fields: ["lastSeen": "everyone"]))["code"], "bad_request")
    }

    func testTypingGoesToTheOtherMembersAndIsNotStored() throws {
        try start()
        let alice = try device("alice"), bob = try device("bob"), mallory = try device("mallory")
        let conversation = try converse(alice, "bob")
        _ = try bob.nextEvent("chat.message")
        try alice.call(.chatTyping(conversation, true))
        let t = try bob.nextEvent("chat.typing")
        XCTAssertEqual(t["user"], "alice")
        XCTAssertEqual(t["typing"], true)
        XCTAssertEqual(try mallory.request(.chatTyping(conversation))["code"], "not_member")
        XCTAssertEqual(try bob.call(.chatHistory(conversation: conversation))["messages"]?.arrayValue?.count, 1, "typing is not a message")
    }
}

/// Attachments: `PUT /media` (streamed, capped, deduplicated by SHA-256),
/// `GET /media/{id}` for conversation members only, with ranges, and
/// thumbnails made through ParleyMedia; checked with curl, ffmpeg and ffprobe.
final class ChatMediaTests: ChatTestCase {
    var pool: BlockingPool!

    override func tearDown() {
        super.tearDown()
        pool?.shutdown()
    }

    func startWithMedia(maxBytes: Int = 8 << 20) throws {
        try start()
        pool = try installMediaRoutes { $0.chatMediaMaxBytes = maxBytes }
    }

    /// curl against the server: (HTTP status, body) with `user`'s token.
    func curl(_ user: String, _ args: [String]) throws -> (status: Int, body: String) {
        let r = try runTool("curl", ["-sS", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(token(user))"] + args)
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    func upload(_ user: String, _ file: String, type: String) throws -> (status: Int, json: JSONValue) {
        let r = try curl(user, ["-X", "PUT", "-H", "Content-Type: \(type)", "--data-binary", "@" + file, server.httpURL + "/media"])
        return (r.status, (try? JSONValue.parse(r.body)) ?? .null)
    }

    func testAttachmentsAreStoredOnceAndServedOnlyToConversationMembers() throws {
        try startWithMedia()
        let dir = tempDir("chat-media")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = dir + "/picture.png"
        XCTAssertEqual(try runTool("ffmpeg", ["-v", "error", "-f", "lavfi", "-i", "testsrc2=s=640x360", "-frames:v", "1", image]).status, 0)
        let sha = try runTool("sha256sum", [image]).out.split(separator: " ").first.map(String.init)

        let first = try upload("alice", image, type: "image/png")
        XCTAssertEqual(first.status, 201)
        let id = try XCTUnwrap(first.json["id"]?.stringValue)
        XCTAssertEqual(id, sha, "named by the SHA-256 of its bytes")
        XCTAssertEqual(first.json["thumbnail"], true)
        let again = try upload("bob", image, type: "image/png")
        XCTAssertEqual(again.status, 200)
        XCTAssertEqual(again.json["deduplicated"], true)
        let stored = try FileManager.default.contentsOfDirectory(atPath: server.dataDir + "/media").filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(stored, [id, id + ".jpg"], "one file and its thumbnail for both uploads")

        // Carol may not read it until a message of hers carries it; mallory never.
        XCTAssertEqual(try curl("carol", ["-o", "/dev/null", server.httpURL + "/media/" + id]).status, 404)
        let alice = try device("alice"), carol = try device("carol")
        try alice.call(.chatSend(to: "carol", clientId: "pic", text: "look", attachments: [id]))
        let m = try carol.nextEvent("chat.message")
        XCTAssertEqual(m["attachments"]?.arrayValue?.first?["id"]?.stringValue, id)
        XCTAssertEqual(m["attachments"]?.arrayValue?.first?["contentType"], "image/png")
        let copy = dir + "/copy.png"
        XCTAssertEqual(try curl("carol", ["-o", copy, server.httpURL + "/media/" + id]).status, 200)
        XCTAssertEqual(FileManager.default.contents(atPath: copy), FileManager.default.contents(atPath: image))
        let part = try curl("carol", ["-H", "Range: bytes=1-3", server.httpURL + "/media/" + id])
        XCTAssertEqual(part.status, 206)
        XCTAssertEqual(Array(part.body.utf8), [0x50, 0x4E, 0x47], "bytes 1-3 of a PNG are \"PNG\"")
        let thumb = dir + "/thumb.jpg"
        XCTAssertEqual(try curl("carol", ["-o", thumb, server.httpURL + "/media/" + id + "/thumbnail"]).status, 200)
        let probe = try runTool("ffprobe", ["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", thumb])
        XCTAssertEqual(probe.out.trimmingCharacters(in: .whitespacesAndNewlines), "mjpeg,320,180")

        let mallory = try device("mallory")
        XCTAssertEqual(try curl("mallory", ["-o", "/dev/null", server.httpURL + "/media/" + id]).status, 404)
        XCTAssertEqual(try mallory.request(.chatSend(to: "carol", clientId: "steal", text: "x", attachments: [id]))["code"], "bad_request",
                       "an id one may not read cannot be attached")
        XCTAssertEqual(try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", server.httpURL + "/media/" + id]).out, "401")
    }

    func testAVideoGetsAPosterFrameAndTheSizeCapHolds() throws {
        try startWithMedia(maxBytes: 4 << 20)
        let video = try upload("alice", repositoryPath("samples/sample-720p-12s.mp4"), type: "video/mp4")
        XCTAssertEqual(video.status, 201)
        XCTAssertEqual(video.json["thumbnail"], true)
        XCTAssertEqual(video.json["contentType"], "video/mp4")
        let dir = tempDir("chat-media-cap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = dir + "/big.bin"
        FileManager.default.createFile(atPath: big, contents: Data(repeating: 7, count: (4 << 20) + 1))
        XCTAssertEqual(try upload("alice", big, type: "application/octet-stream").status, 413)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: server.dataDir + "/media").filter { $0.hasPrefix(".partial") }, [],
                       "the refused body left no partial file")
        // A script type is stored as bytes, never served as HTML.
        let page = dir + "/page.html"
        FileManager.default.createFile(atPath: page, contents: Data("<script>alert(1)</script>".utf8))
        XCTAssertEqual(try upload("alice", page, type: "text/html").json["contentType"], "application/octet-stream")
    }
}

/// Retention and the admin API.
final class ChatRetentionTests: ChatTestCase {
    func prune(_ retention: ChatStore.Retention) throws -> Int {
        try waitFor { done in try! self.server.front.chat!.prune(retention, completion: done) }
    }

    func testDeliveredMessagesAreDeletedOnlyOnceEveryMemberAndDeviceHasThem() throws {
        try start()
        let alice = try device("alice"), bobPhone = try device("bob", "phone"), bobLaptop = try device("bob", "laptop")
        var conversation: Int64 = 0
        for i in 1...3 {
            conversation = Int64(try alice.call(.chatSend(to: "bob", clientId: "r\(i)", text: "\(i)"))["conversation"]!.intValue!)
        }
        XCTAssertEqual(try prune(.delivered), 0, "nothing delivered yet")
        try bobPhone.call(.chatAck(conversation: conversation, seq: 3))
        try bobLaptop.call(.chatAck(conversation: conversation, seq: 2))
        XCTAssertEqual(try prune(.days(1)), 0, "delivered, but younger than a day")
        XCTAssertEqual(try prune(.forever), 0)
        XCTAssertEqual(try prune(.delivered), 2, "seq 3 waits for the laptop")
        XCTAssertEqual(try alice.call(.chatHistory(conversation: conversation))["messages"]?.arrayValue?.compactMap { $0["seq"]?.intValue }, [3])
        // A deleted message does not come back in a sync; the sequence goes on.
        XCTAssertEqual(try alice.call(.chatSend(to: "bob", clientId: "r4", text: "4"))["seq"], 4)
        // Every message gone, the newest included: the sequence still goes on.
        try bobPhone.call(.chatAck(conversation: conversation, seq: 4))
        try bobLaptop.call(.chatAck(conversation: conversation, seq: 4))
        XCTAssertEqual(try prune(.delivered), 2)
        XCTAssertEqual(try alice.call(.chatHistory(conversation: conversation))["messages"]?.arrayValue?.count, 0)
        XCTAssertEqual(try alice.call(.chatSend(to: "bob", clientId: "r5", text: "5"))["seq"], 5)
        XCTAssertEqual(try prune(.delivered), 0)
        XCTAssertEqual(try alice.call(.chatSend(to: "bob", clientId: "r6", text: "6"))["seq"], 6)
    }

    func testAdminRoutesCountMessagesAndDescribeAUser() throws {
        try start { $0.chatRetention = "forever" }
        let alice = try device("alice")
        try alice.call(.chatSend(to: "bob", clientId: "a1", text: "x"))
        let group = try alice.call(.chatCreateGroup(name: "g", members: ["bob", "carol"]))["conversation"]!.intValue!
        let now = Int64(Date().timeIntervalSince1970)
        let admin = JWT.sign(TokenClaims(subject: "ops", room: nil, issuedAt: now, expiresAt: now + 600, isAdmin: true), secret: server.secret)
        let totals = try runTool("curl", ["-sS", "-H", "Authorization: Bearer \(admin)", server.httpURL + "/admin/chat"])
        let t = try JSONValue.parse(totals.out)
        XCTAssertEqual(t["messages"], 2)
        XCTAssertEqual(t["conversations"], 1)
        XCTAssertEqual(t["groups"], 1)
        XCTAssertEqual(t["users"], 3)
        let u = try JSONValue.parse(try runTool("curl", ["-sS", "-H", "Authorization: Bearer \(admin)", server.httpURL + "/admin/chat/users/alice"]).out)
        XCTAssertEqual(u["stored"], 2)
        XCTAssertEqual(u["conversations"]?.arrayValue?.compactMap { $0["kind"]?.stringValue }, ["direct", "group"])
        XCTAssertEqual(u["conversations"]?.arrayValue?.last?["conversation"]?.intValue, group)
        XCTAssertEqual(u["conversations"]?.arrayValue?.first?["with"], "bob")
        XCTAssertEqual(try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(token("alice"))",
                                            server.httpURL + "/admin/chat"]).out, "403")
    }
}
