import XCTest
import Foundation
import ParleyCore
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

    func testSupersededReceiptsArePrunedAndTheLatestStillReachTheSender() throws {
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
        XCTAssertEqual(try waitFor { done in try! store.receiptCount(completion: done) }, 5)
        XCTAssertEqual(try waitFor { done in try! store.pruneReceipts(completion: done) }, 3)
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
        XCTAssertEqual(try waitFor { done in try! store.pruneReceipts(completion: done) }, 0)
    }
}
