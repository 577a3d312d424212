import XCTest
import Foundation
import ParleyTestSupport
import ParleyStore
@testable import ParleyChat

/// chat.db files made by older builds, brought up to date by `ChatStore.migrations` on open.
final class ChatStoreMigrationTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDir("chat-migration") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Receipts were a log (a row per moved mark, thinned by a prune); now
    /// each member has one row per status. The migration keeps the latest
    /// of each, with its id, and the next receipt's id is greater than any
    /// in the log, so a device's receipt cursor still means what it did.
    func testAReceiptLogBecomesTheLatestRowOfEachAndIdsGoOnGrowing() throws {
        let path = dir + "/chat.db"
        let old = Array(ChatStore.migrations.prefix { $0.name != "receipts one row per member and status" })
        XCTAssertLessThan(old.count, ChatStore.migrations.count)
        do {
            let db = try Database(path: path)
            try db.migrate(old)
            try db.run("INSERT INTO conversations(id, kind, direct_a, direct_b, created_at) VALUES (7, 'direct', 'alice', 'bob', 0)")
            for u in ["alice", "bob"] { try db.run("INSERT INTO members(conversation, user) VALUES (7, ?)", [.text(u)]) }
            for seq in 1...3 {
                try db.run("INSERT INTO messages(conversation, seq, sender, sender_device, client_id, body, sent_at) VALUES (7, ?, 'alice', 'phone', ?, 'x', 0)",
                           [.integer(Int64(seq)), .text("c\(seq)")])
            }
            try db.run("UPDATE members SET delivered_seq = 3, read_seq = 3 WHERE conversation = 7 AND user = 'bob'")
            // bob's marks as the log had them, none pruned yet: ids 1 to 5.
            for (status, seq) in [("delivered", 1), ("delivered", 2), ("read", 2), ("delivered", 3), ("read", 3)] {
                try db.run("INSERT INTO receipts(conversation, user, status, seq, at) VALUES (7, 'bob', ?, ?, 0)",
                           [.text(status), .integer(Int64(seq))])
            }
        }
        let store = try ChatStore(path: path)
        defer { store.close() }
        XCTAssertEqual(try waitFor { done in try! store.receiptCount(completion: done) }, 2)
        let pending = try waitFor { done in try! store.pendingReceipts(user: "alice", device: "laptop", completion: done) }
        XCTAssertEqual(pending.map { "\($0.status.rawValue) \($0.seq) #\($0.id)" }, ["delivered 3 #4", "read 3 #5"])

        let sent = try waitFor { done in
            try! store.send(from: "alice", device: "phone", to: .user("bob"), clientId: "c4", text: "y", completion: done)
        }
        XCTAssertEqual(sent.message.seq, 4)
        let marked = try waitFor { done in
            try! store.ack(user: "bob", device: "tablet", conversation: 7, seq: 4, receipt: nil, completion: done)
        }
        XCTAssertEqual(marked.receipt?.id, 6, "the next id after the log's largest")
        XCTAssertEqual(try waitFor { done in try! store.receiptCount(completion: done) }, 2, "the delivered row moved in place")
        let after = try waitFor { done in try! store.pendingReceipts(user: "alice", device: "laptop", completion: done) }
        XCTAssertEqual(after.map { "\($0.status.rawValue) \($0.seq) #\($0.id)" }, ["read 3 #5", "delivered 4 #6"])
    }

    /// The prune's questions about each message are searches, not scans: without an index on
    /// cursors(conversation) every message scanned every device cursor (20 s of the writer for 120,000
    /// messages), so a chat.db from before gets it.
    func testThePruneSearchesAConversationsCursorsByIndex() throws {
        let path = dir + "/chat.db"
        do {
            let db = try Database(path: path)
            try db.migrate(Array(ChatStore.migrations.prefix { $0.name != "cursors by conversation" }))
        }
        try ChatStore(path: path).close()
        let db = try Database(path: path)
        let plan = try db.rows("EXPLAIN QUERY PLAN " + ChatStore.pruneSQL, [.integer(1), .integer(0)]) { $0.string(3) ?? "" }
        XCTAssertFalse(plan.isEmpty)
        XCTAssertEqual(plan.filter { $0.hasPrefix("SCAN") }, [], "\(plan)")
        XCTAssertTrue(plan.contains { $0.contains("cursors_by_conversation") }, "\(plan)")
    }
}
