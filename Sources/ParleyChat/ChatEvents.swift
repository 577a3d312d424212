import ParleyCore
import ParleySignalling

// The chat events and replies written once per message, straight into their
// text with a `JSONObjectWriter` (members in sorted key order, the bytes
// `JSONValue.serialized` gives), without building a dictionary per message.
// They are the one definition of these messages' shape (ChatEventTextTests
// holds them to docs/protocol.md's fields).

extension StoredMessage {
    /// The `chat.message` event.
    func eventText(ackRequested: Bool = false) -> String {
        var w = JSONObjectWriter(capacity: 192 + body.utf8.count)
        if ackRequested { w.add("ack", true) }
        if let attachments, let a = try? JSONValue.parse(attachments) { w.add("attachments", a) }
        if kind == .text { w.add("clientId", clientId) }
        w.add("conversation", conversation)
        if kind == .group { w.add("event", (try? JSONValue.parse(body)) ?? .null) }
        w.add("from", sender)
        w.add("fromDevice", senderDevice)
        if to == nil { w.add("group", true) }
        w.add("messageId", id)
        w.add("sentAt", sentAt)
        w.add("seq", seq)
        if kind == .text { w.add("text", body) }
        if let to { w.add("to", to) }
        w.add("type", "chat.message")
        return w.finish()
    }

    /// The `chat.message` event as a value, for a reply that carries
    /// messages (`chat.history`).
    var json: JSONValue { (try? JSONValue.parse(eventText())) ?? .null }

    /// The `sent` reply to the `chat.send` (or group change) that stored this message.
    func sentReply(_ reply: SignallingReply, duplicate: Bool) -> String {
        var w = JSONObjectWriter(capacity: 160)
        w.add("conversation", conversation)
        if duplicate { w.add("duplicate", true) }
        w.add("id", reply.id)
        w.add("messageId", id)
        w.add("ok", true)
        w.add("sentAt", sentAt)
        w.add("seq", seq)
        w.add("status", "sent")
        w.add("type", reply.type)
        return w.finish()
    }
}

extension Receipt {
    /// The `chat.receipt` event, with the group `summary` when there is one.
    func eventText(summary s: (seq: Int64, delivered: Int, read: Int, of: Int)? = nil) -> String {
        var w = JSONObjectWriter(capacity: 160)
        w.add("conversation", conversation)
        w.add("receiptId", id)
        w.add("seq", seq)
        w.add("status", status.rawValue)
        if let s {
            w.add("summary", ["seq": JSONValue(Int(s.seq)), "delivered": JSONValue(s.delivered), "read": JSONValue(s.read),
                              "of": JSONValue(s.of)])
        }
        w.add("type", "chat.receipt")
        w.add("user", user)
        return w.finish()
    }
}
