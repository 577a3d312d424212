import XCTest
import Foundation
import ParleyCore
import ParleyIO
import ParleyTestSupport
@testable import ParleyServer
@testable import ParleyChat
@testable import ParleyProtocol

/// The store's bounds over all of a user's conversations, over real WebSocket sessions on loopback.
final class ChatBoundsTests: ChatTestCase {
    func testARecipientsBacklogIsBoundedOverAllConversationsGroupsIncluded() throws {
        try start { $0.chatMaxBacklog = 3 }
        let alice = try device("alice"), dave = try device("dave")
        let direct = Int64(try alice.call(.chatSend(to: "bob", clientId: "a1", text: "x"))["conversation"]!.intValue!)
        _ = try alice.call(.chatSend(to: "bob", clientId: "a2", text: "x"))
        // A group with bob in it: its "created" message is the third bob has not had.
        let group = Int64(try dave.call(.chatCreateGroup(name: "g", members: ["bob", "carol"]))["conversation"]!.intValue!)
        let refused = try dave.request(.chatSend(group: group, clientId: "g1", text: "x"))
        XCTAssertEqual(refused["code"], "backlog_full", "a group message is refused while one member is full")
        XCTAssertTrue(refused["message"]?.stringValue?.contains("bob") == true, "it names the member")
        XCTAssertEqual(try alice.request(.chatSend(to: "bob", clientId: "a3", text: "x"))["code"], "backlog_full",
                       "another conversation's messages count")
        XCTAssertEqual(try dave.call(.chatSend(to: "carol", clientId: "d1", text: "x"))["status"], "sent", "others are not affected")
        // Bob catches up on the direct conversation: there is room again, in both.
        let bob = try device("bob")
        try bob.call(.chatAck(conversation: direct, seq: 2))
        XCTAssertEqual(try dave.call(.chatSend(group: group, clientId: "g1", text: "x"))["status"], "sent")
        XCTAssertEqual(try alice.call(.chatSend(to: "bob", clientId: "a3", text: "x"))["seq"], 3)
        let metrics = try runTool("curl", ["-s", server.httpURL + "/metrics"]).out
        XCTAssertTrue(metrics.contains("parley_chat_refused_total{reason=\"backlog_full\"}"))
    }

    /// The writer keeps an upper bound of each recipient's backlog so that a
    /// send far below the limit needs no sum; group messages must raise it
    /// too, or a direct send would pass a recipient already at the limit.
    func testGroupMessagesCountTowardsTheBoundKeptForDirectSends() throws {
        try start { $0.chatMaxBacklog = 5 }
        let alice = try device("alice"), dave = try device("dave")
        _ = try alice.call(.chatSend(to: "bob", clientId: "a1", text: "x"))                  // bob: 1
        let group = Int64(try dave.call(.chatCreateGroup(name: "g", members: ["bob"]))["conversation"]!.intValue!) // 2
        _ = try alice.call(.chatSend(to: "bob", clientId: "a2", text: "x"))                  // 3
        XCTAssertEqual(try dave.call(.chatSend(group: group, clientId: "g1", text: "x"))["status"], "sent") // 4
        XCTAssertEqual(try dave.call(.chatSend(group: group, clientId: "g2", text: "x"))["status"], "sent") // 5
        XCTAssertEqual(try alice.request(.chatSend(to: "bob", clientId: "a3", text: "x"))["code"], "backlog_full",
                       "bob has 5 waiting, 2 of them from the group")
    }

    /// A receipt is its member's one row of that status, moved in place: nothing to prune.
    func testAMemberHasOneReceiptPerStatusAndTheLatestStillReachTheSender() throws {
        try start()
        let alice = try device("alice"), bob = try device("bob")
        var conversation: Int64 = 0
        for i in 1...3 {
            conversation = Int64(try alice.call(.chatSend(to: "bob", clientId: "m\(i)", text: "x"))["conversation"]!.intValue!)
            _ = try bob.nextEvent("chat.message")
            try bob.call(.chatAck(conversation: conversation, seq: Int64(i)))
        }
        try bob.call(.chatRead(conversation: conversation, seq: 2))
        try bob.call(.chatRead(conversation: conversation, seq: 3))
        alice.close()
        let store = server.front.chat!
        XCTAssertEqual(try waitFor { done in try! store.receiptCount(completion: done) }, 2, "the latest delivered and read")
        // A new device of alice's syncs the receipts it missed: the latest of each.
        let laptop = try device("alice", "laptop", waitForSync: false)
        var receipts: [String: Int] = [:]
        while true {
            let e = try laptop.nextEvent()
            if e["type"] == "sync.done" { break }
            if e["type"] == "chat.receipt" { receipts[e["status"]!.stringValue!] = e["seq"]?.intValue }
        }
        XCTAssertEqual(receipts, ["delivered": 3, "read": 3])
    }
}

/// Attachments per user (`chat-media-max-bytes-per-user`) and `DELETE /media/{id}`, with curl.
final class ChatMediaQuotaTests: ChatTestCase {
    var pool: BlockingPool!
    var mediaDir: String { server.dataDir + "/media" }

    override func tearDown() {
        super.tearDown()
        pool?.shutdown()
    }

    func startWithMedia(quota: Int) throws {
        try start()
        pool = try installMediaRoutes { $0.chatMediaMaxBytesPerUser = quota }
    }

    /// `method` on /media[/id] as `user` with `body` (bytes of a file): the status and the JSON answered, if any.
    func media(_ method: String, _ user: String, id: String = "", body: [UInt8]? = nil) throws -> (Int, JSONValue?) {
        var args = ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", "Authorization: Bearer \(token(user))"]
        if let body {
            let file = tempDir("quota") + "/body"
            FileManager.default.createFile(atPath: file, contents: Data(body))
            args += ["-H", "Content-Type: text/plain", "--data-binary", "@" + file]
        }
        let out = try runTool("curl", args + [server.httpURL + "/media" + (id.isEmpty ? "" : "/" + id)]).out
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, try? JSONValue.parse(lines.dropLast().joined(separator: "\n")))
    }

    var storedFiles: Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: mediaDir)) ?? []) }

    func testAUsersAttachmentsAreBoundedAndTheUploaderDeletesThem() throws {
        try startWithMedia(quota: 3000)
        let first = [UInt8](repeating: 0x61, count: 2000), second = [UInt8](repeating: 0x62, count: 2000)
        let (created, json) = try media("PUT", "alice", body: first)
        XCTAssertEqual(created, 201)
        let id = json!["id"]!.stringValue!
        let (refused, why) = try media("PUT", "alice", body: second)
        XCTAssertEqual(refused, 507, "2000 + 2000 bytes > 3000")
        XCTAssertTrue(why?["error"]?.stringValue?.contains("chat-media-max-bytes-per-user") == true)
        XCTAssertEqual(storedFiles, [id], "the refused bytes are not kept")
        XCTAssertEqual(try media("PUT", "bob", body: second).0, 201, "the quota is alice's alone")
        XCTAssertEqual(try media("PUT", "alice", body: first).0, 200, "her own bytes again cost nothing")

        XCTAssertEqual(try media("DELETE", "bob", id: id).0, 404, "only the uploader deletes")
        XCTAssertEqual(try media("DELETE", "alice", id: id).0, 204)
        XCTAssertFalse(storedFiles.contains(id), "nobody owns it and no message carries it: gone")
        XCTAssertEqual(try media("GET", "alice", id: id).0, 404)
        XCTAssertEqual(try media("DELETE", "alice", id: id).0, 404, "once")
        XCTAssertEqual(try media("PUT", "alice", body: second).0, 200, "room again (bob's copy: deduplicated)")
    }

    func testAnAttachmentAMessageCarriesStaysUntilTheMessageIsGone() throws {
        try startWithMedia(quota: 1 << 20)
        let (_, json) = try media("PUT", "alice", body: [UInt8](repeating: 0x63, count: 1000))
        let id = json!["id"]!.stringValue!
        let alice = try device("alice")
        let sent = try alice.call(.chatSend(to: "bob", clientId: "p", text: "look", attachments: [id]))
        XCTAssertEqual(try media("DELETE", "alice", id: id).0, 204)
        XCTAssertTrue(storedFiles.contains(id), "bob's message still carries it")
        XCTAssertEqual(try media("GET", "bob", id: id).0, 200)
        // Bob gets it; retention deletes the message; the sweep removes the bytes.
        let bob = try device("bob", waitForSync: false)
        _ = try bob.nextEvent("sync.done")
        try bob.call(.chatAck(conversation: Int64(sent["conversation"]!.intValue!), seq: 1))
        let store = server.front.chat!
        XCTAssertEqual(try waitFor { done in try! store.prune(.delivered, completion: done) }, 1)
        let swept = try waitFor { done in try! store.sweepMedia(completion: done) }
        XCTAssertEqual(swept, [id])
        XCTAssertEqual(try media("GET", "bob", id: id).0, 404)
    }
}
