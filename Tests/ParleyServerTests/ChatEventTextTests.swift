import XCTest
import ParleyCore
@testable import ParleyChat
@testable import ParleySignalling
import ParleyProtocol
import ParleyAuth

/// The events and replies chat writes once per message with a
/// `JSONObjectWriter` are the bytes their `JSONValue` serializes to, in
/// every shape they take.
final class ChatEventTextTests: XCTestCase {
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
                XCTAssertEqual(m.eventText(ackRequested: ack), m.json(ackRequested: ack).serialized)
            }
        }
    }

    func testReceiptsAreWrittenAsTheirJSONValueSerializes() {
        let r = Receipt(id: 310, conversation: 7, user: "bob", status: .delivered, seq: 42)
        XCTAssertEqual(r.eventText(), r.json.serialized)
        var read = r
        read.status = .read
        XCTAssertEqual(read.eventText(), read.json.serialized)
        guard case .object(var o) = r.json else { return XCTFail() }
        o["summary"] = ["seq": 41, "delivered": 48, "read": 3, "of": 49]
        XCTAssertEqual(r.eventText(summary: (41, 48, 3, 49)), JSONValue.object(o).serialized)
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
}
