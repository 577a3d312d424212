import XCTest
import ParleyCore
@testable import ParleyChat
@testable import ParleySignalling
import ParleyProtocol
import ParleyAuth

/// The events and replies chat writes once per message with a
/// `JSONObjectWriter` carry the fields docs/protocol.md gives them (built
/// here as a `JSONValue`, independently of the writer), in every shape
/// they take, as the bytes `JSONValue.serialized` writes (sorted keys).
final class ChatEventTextTests: XCTestCase {
    /// `text` is valid JSON, equal to `expected`, in canonical form.
    func assertText(_ text: String, is expected: JSONValue, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(text, expected.serialized, file: file, line: line)
        XCTAssertEqual(try? JSONValue.parse(text), expected, file: file, line: line)
    }

    func testMessagesAreWrittenAsTheirJSONValueSerializes() {
        let text = StoredMessage(id: 8812, conversation: 7, seq: 42, sender: "alice", senderDevice: "phone", clientId: "c-1",
                                 kind: .text, body: "hi \"bob\"\n☃ 😀", sentAt: 1_733_000_000_123, to: "bob")
        var group = text
        group.to = nil
        group.attachments = #"[{"contentType":"image/png","id":"ab","size":12,"thumbnail":true}]"#
        var change = group
        change.kind = .group
        change.body = #"{"change":"renamed","name":"x"}"#
        var unparsable = change
        unparsable.body = "not json"
        unparsable.attachments = "[oops"
        var large = text
        large.id = 1_000_000_000_000_001
        large.seq = -3
        for m in [text, group, change, unparsable, large] {
            for ack in [false, true] {
                assertText(m.eventText(ackRequested: ack), is: expected(m, ack: ack))
            }
        }
    }

    func testReceiptsAreWrittenAsTheirJSONValueSerializes() {
        let r = Receipt(id: 310, conversation: 7, user: "bob", status: .delivered, seq: 42)
        let fields: [String: JSONValue] = ["type": "chat.receipt", "conversation": 7, "user": "bob", "seq": 42, "receiptId": 310]
        var delivered = fields
        delivered["status"] = "delivered"
        assertText(r.eventText(), is: .object(delivered))
        var read = r
        read.status = .read
        var readFields = fields
        readFields["status"] = "read"
        assertText(read.eventText(), is: .object(readFields))
        delivered["summary"] = ["seq": 41, "delivered": 48, "read": 3, "of": 49]
        assertText(r.eventText(summary: (41, 48, 3, 49)), is: .object(delivered))
    }

    func testTheSentReplyIsWrittenAsTheCoreWritesAReply() {
        let core = SignallingCore(verifier: SignallingCoreTests.Verifier(), scheduler: SignallingCoreTests.Scheduler())
        let m = StoredMessage(id: 8812, conversation: 7, seq: 42, sender: "alice", senderDevice: "phone", clientId: "c-1",
                              kind: .text, body: "hi", sentAt: 1_733_000_000_123, to: "bob")
        for id: JSONValue in [5, "req-9"] {
            for duplicate in [false, true] {
                let reply = SignallingReply(core: core, connection: 1, id: id, type: "chat.send")
                var fields: [String: JSONValue] = ["status": "sent", "messageId": 8812, "conversation": 7, "seq": 42,
                                                   "sentAt": JSONValue(1_733_000_000_123)]
                if duplicate { fields["duplicate"] = true }
                XCTAssertEqual(m.sentReply(reply, duplicate: duplicate), signallingReply(id: id, type: "chat.send", fields).serialized)
            }
        }
    }

    /// The `chat.message` fields docs/protocol.md lists, for `m`.
    private func expected(_ m: StoredMessage, ack: Bool) -> JSONValue {
        var o: [String: JSONValue] = [
            "type": "chat.message", "conversation": JSONValue(Int(m.conversation)), "seq": JSONValue(Int(m.seq)),
            "messageId": JSONValue(Int(m.id)), "from": .string(m.sender), "fromDevice": .string(m.senderDevice),
            "sentAt": JSONValue(Int(m.sentAt)),
        ]
        if let to = m.to { o["to"] = .string(to) } else { o["group"] = true }
        switch m.kind {
        case .text:
            o["clientId"] = .string(m.clientId)
            o["text"] = .string(m.body)
        case .group: o["event"] = (try? JSONValue.parse(m.body)) ?? .null
        }
        if let attachments = m.attachments, let a = try? JSONValue.parse(attachments) { o["attachments"] = a }
        if ack { o["ack"] = true }
        return .object(o)
    }
}
