/// The chat requests (docs/protocol.md, "Chat"): what the chat feature of
/// the signalling server reads from a `ClientRequest`, and what clients
/// write with the `ClientRequest` constructors below.

import ParleyCore

/// Where a message goes: a user (their direct conversation with the sender) or a group.
public enum ChatTarget: Sendable, Equatable {
    case user(String)
    case group(Int64)
}

/// What an administrator (or a member, for `leave`) does to a group.
public enum GroupChange: Sendable, Equatable {
    case rename(String)
    case add([String])
    case remove([String])
    case leave
}

/// One conversation of a `chat.ack`: the device has every message of it up to `seq`.
public struct ChatAck: Sendable, Equatable {
    public var conversation: Int64
    public var seq: Int64
    public init(conversation: Int64, seq: Int64) {
        self.conversation = conversation
        self.seq = seq
    }
}

/// Who sees a user's online state and last seen (`chat.privacy`).
public enum LastSeenVisibility: String, Sendable, Equatable {
    /// Users who share a conversation with them (the default).
    case contacts
    case nobody
}

public enum ChatRequest: Sendable, Equatable {
    /// A message to a user (`to`) or a group (`group`); `clientId` makes a resend idempotent.
    /// `attachments` are ids of media (`PUT /media`) the sender may read.
    case send(to: ChatTarget, clientId: String, text: String, attachments: [String])
    /// A new group named `name` with the sender (its administrator) and `members`.
    case createGroup(name: String, members: [String])
    /// A change to group `conversation`.
    case changeGroup(conversation: Int64, GroupChange)
    /// The members of group `conversation`, their roles and receipts.
    case members(conversation: Int64)
    /// Whether `users` are online, and when they were last seen (contacts only, as their settings allow).
    case presence(users: [String])
    /// Who may see this user's online state and last seen.
    case privacy(lastSeen: LastSeenVisibility)
    /// The user is (or stopped) typing in `conversation`: passed on to the other members' devices, never stored.
    case typing(conversation: Int64, typing: Bool)
    /// This device has every message of each conversation up to its `seq`
    /// (cumulative; one conversation, or up to `maxAcks` in one request);
    /// `receipt`, when given, is the last `receiptId` it has.
    case ack([ChatAck], receipt: Int64?)
    /// The user has read `conversation` up to `seq`.
    case read(conversation: Int64, seq: Int64)
    /// Send what this device lacks: messages after `cursors` (conversation →
    /// last seq it has), or after its stored cursors when nil.
    case sync(cursors: [Int64: Int64]?)
    /// Up to `limit` messages of `conversation` before `before` (newest first).
    case history(conversation: Int64, before: Int64?, limit: Int)

    /// The message types of chat.
    public static let types = ["chat.send", "chat.ack", "chat.read", "chat.sync", "chat.history",
                               "chat.group.create", "chat.group.rename", "chat.group.add", "chat.group.remove",
                               "chat.group.leave", "chat.group.members", "chat.presence", "chat.privacy", "chat.typing"]

    /// The most attachments one message may carry.
    public static let maxAttachments = 10

    /// Whether `id` has the form of a media id (the SHA-256 of its bytes, 64 lowercase hex digits).
    public static func isMediaID(_ id: String) -> Bool {
        id.utf8.count == 64 && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The most users one `chat.presence` may ask about.
    public static let maxPresenceUsers = 256

    /// The most users one request may name (the group size limit is the server's, `chat-max-group-members`).
    public static let maxUsersPerRequest = 1000

    /// The most conversations one `chat.ack` may acknowledge (`acks`).
    public static let maxAcks = 500

    /// The longest `clientId`, in bytes.
    public static let maxClientIdBytes = 64
    /// The most messages one `chat.history` returns.
    public static let maxHistory = 100

    /// Reads a request of one of `types`. `maxTextBytes` bounds `text`
    /// (longer is `too_large`); a missing or mistyped field is `bad_request`.
    public init(_ r: ClientRequest, maxTextBytes: Int) throws(SignallingError) {
        switch r.type {
        case "chat.send":
            guard let t = r.fields["text"], let text = t.stringValue else { throw r.fail("missing string field \"text\"") }
            guard text.utf8.count <= maxTextBytes else {
                throw SignallingError(.tooLarge, "text of \(text.utf8.count) bytes is over the limit of \(maxTextBytes)")
            }
            let target: ChatTarget
            switch (try r.string("to", optional: true), try r.integer("group", min: 1, optional: true)) {
            case (let user?, nil): target = .user(user)
            case (nil, let group?): target = .group(group)
            default: throw r.fail("name either \"to\" (a user) or \"group\" (a group's conversation)")
            }
            var attachments: [String] = []
            if let a = r.fields["attachments"], a != .null {
                guard let list = a.arrayValue, list.count <= Self.maxAttachments,
                      list.allSatisfy({ $0.stringValue.map(Self.isMediaID) ?? false }) else {
                    throw r.fail("\"attachments\" must be an array of at most \(Self.maxAttachments) media ids (64 hex digits)")
                }
                attachments = list.compactMap(\.stringValue)
            }
            self = .send(to: target, clientId: try r.string("clientId", maxBytes: Self.maxClientIdBytes), text: text, attachments: attachments)
        case "chat.group.create":
            self = .createGroup(name: try r.string("name"), members: try r.users("members"))
        case "chat.group.rename":
            self = .changeGroup(conversation: try r.integer("conversation", min: 1), .rename(try r.string("name")))
        case "chat.group.add":
            self = .changeGroup(conversation: try r.integer("conversation", min: 1), .add(try r.users("members", allowEmpty: false)))
        case "chat.group.remove":
            self = .changeGroup(conversation: try r.integer("conversation", min: 1), .remove(try r.users("members", allowEmpty: false)))
        case "chat.group.leave":
            self = .changeGroup(conversation: try r.integer("conversation", min: 1), .leave)
        case "chat.group.members":
            self = .members(conversation: try r.integer("conversation", min: 1))
        case "chat.presence":
            let users = try r.users("users", allowEmpty: false)
            guard users.count <= Self.maxPresenceUsers else { throw r.fail("\"users\" names at most \(Self.maxPresenceUsers) users") }
            self = .presence(users: users)
        case "chat.privacy":
            guard let v = LastSeenVisibility(rawValue: try r.string("lastSeen")) else {
                throw r.fail("\"lastSeen\" must be \"contacts\" or \"nobody\"")
            }
            self = .privacy(lastSeen: v)
        case "chat.typing":
            self = .typing(conversation: try r.integer("conversation", min: 1), typing: try r.bool("typing", default: true))
        case "chat.ack":
            let receipt = try r.integer("receipt", min: 0, optional: true)
            guard let a = r.fields["acks"], a != .null else {
                self = .ack([ChatAck(conversation: try r.integer("conversation", min: 1), seq: try r.integer("seq", min: 0))], receipt: receipt)
                return
            }
            guard r.fields["conversation"] == nil, r.fields["seq"] == nil else {
                throw r.fail("name either \"acks\" or \"conversation\" and \"seq\"")
            }
            guard let list = a.arrayValue, !list.isEmpty, list.count <= Self.maxAcks else {
                throw r.fail("\"acks\" must be an array of 1 to \(Self.maxAcks) {conversation, seq} objects")
            }
            var acks: [ChatAck] = []
            acks.reserveCapacity(list.count)
            for e in list {
                guard let c = e["conversation"]?.intValue, c >= 1, let seq = e["seq"]?.intValue, seq >= 0 else {
                    throw r.fail("each of \"acks\" must be {\"conversation\": an integer of at least 1, \"seq\": an integer of at least 0}")
                }
                acks.append(ChatAck(conversation: Int64(c), seq: Int64(seq)))
            }
            self = .ack(acks, receipt: receipt)
        case "chat.read":
            self = .read(conversation: try r.integer("conversation", min: 1), seq: try r.integer("seq", min: 0))
        case "chat.sync":
            guard let c = r.fields["cursors"], c != .null else { self = .sync(cursors: nil); return }
            guard let o = c.objectValue, o.count <= 10_000 else {
                throw r.fail("\"cursors\" must be an object of at most 10000 conversation → seq entries")
            }
            var cursors: [Int64: Int64] = [:]
            for (k, v) in o {
                guard let conv = Int64(k), conv > 0, let seq = v.intValue, seq >= 0 else {
                    throw r.fail("\"cursors\" maps conversation ids to sequence numbers, got \"\(k)\"")
                }
                cursors[conv] = Int64(seq)
            }
            self = .sync(cursors: cursors)
        case "chat.history":
            let limit = try r.integer("limit", min: 1, optional: true) ?? 50
            guard limit <= Int64(Self.maxHistory) else { throw r.fail("\"limit\" must be 1-\(Self.maxHistory)") }
            self = .history(conversation: try r.integer("conversation", min: 1),
                            before: try r.integer("before", min: 1, optional: true), limit: Int(limit))
        default: throw SignallingError(.unknownType, "unknown message type \"\(r.type)\"")
        }
    }

    /// The request as a client sends it.
    public var request: ClientRequest {
        switch self {
        case .send(let to, let clientId, let text, let attachments):
            var o: [String: JSONValue] = ["clientId": .string(clientId), "text": .string(text)]
            if !attachments.isEmpty { o["attachments"] = .array(attachments.map { .string($0) }) }
            switch to {
            case .user(let u): o["to"] = .string(u)
            case .group(let g): o["group"] = JSONValue(Int(g))
            }
            return ClientRequest(type: "chat.send", fields: o)
        case .createGroup(let name, let members):
            return ClientRequest(type: "chat.group.create", fields: ["name": .string(name), "members": .array(members.map { .string($0) })])
        case .changeGroup(let conversation, let change):
            let c = JSONValue(Int(conversation))
            switch change {
            case .rename(let name): return ClientRequest(type: "chat.group.rename", fields: ["conversation": c, "name": .string(name)])
            case .add(let users): return ClientRequest(type: "chat.group.add", fields: ["conversation": c, "members": .array(users.map { .string($0) })])
            case .remove(let users): return ClientRequest(type: "chat.group.remove", fields: ["conversation": c, "members": .array(users.map { .string($0) })])
            case .leave: return ClientRequest(type: "chat.group.leave", fields: ["conversation": c])
            }
        case .members(let conversation):
            return ClientRequest(type: "chat.group.members", fields: ["conversation": JSONValue(Int(conversation))])
        case .presence(let users):
            return ClientRequest(type: "chat.presence", fields: ["users": .array(users.map { .string($0) })])
        case .privacy(let v):
            return ClientRequest(type: "chat.privacy", fields: ["lastSeen": .string(v.rawValue)])
        case .typing(let conversation, let typing):
            return ClientRequest(type: "chat.typing", fields: ["conversation": JSONValue(Int(conversation)), "typing": .bool(typing)])
        case .ack(let acks, let receipt):
            var o: [String: JSONValue]
            if acks.count == 1 {
                o = ["conversation": JSONValue(Int(acks[0].conversation)), "seq": JSONValue(Int(acks[0].seq))]
            } else {
                o = ["acks": .array(acks.map { ["conversation": JSONValue(Int($0.conversation)), "seq": JSONValue(Int($0.seq))] })]
            }
            if let receipt { o["receipt"] = JSONValue(Int(receipt)) }
            return ClientRequest(type: "chat.ack", fields: o)
        case .read(let conversation, let seq):
            return ClientRequest(type: "chat.read", fields: ["conversation": JSONValue(Int(conversation)), "seq": JSONValue(Int(seq))])
        case .sync(let cursors):
            guard let cursors else { return ClientRequest(type: "chat.sync") }
            return ClientRequest(type: "chat.sync", fields: [
                "cursors": .object(Dictionary(uniqueKeysWithValues: cursors.map { (String($0.key), JSONValue(Int($0.value))) })),
            ])
        case .history(let conversation, let before, let limit):
            var o: [String: JSONValue] = ["conversation": JSONValue(Int(conversation)), "limit": JSONValue(limit)]
            if let before { o["before"] = JSONValue(Int(before)) }
            return ClientRequest(type: "chat.history", fields: o)
        }
    }
}

extension ClientRequest {
    /// An integer field of at least `min`; nil when absent and `optional`.
    public func integer(_ key: String, min: Int64, optional: Bool = false) throws(SignallingError) -> Int64? {
        guard let f = fields[key], f != .null else {
            if optional { return nil }
            throw fail("missing integer field \"\(key)\"")
        }
        guard let i = f.intValue, Int64(i) >= min else { throw fail("\"\(key)\" must be an integer of at least \(min)") }
        return Int64(i)
    }

    public func integer(_ key: String, min: Int64) throws(SignallingError) -> Int64 {
        try integer(key, min: min, optional: false)!
    }

    /// An array of user names (each 1-256 bytes), without repeats, at most `ChatRequest.maxUsersPerRequest`.
    func users(_ key: String, allowEmpty: Bool = true) throws(SignallingError) -> [String] {
        guard let list = fields[key]?.arrayValue, list.count <= ChatRequest.maxUsersPerRequest, allowEmpty || !list.isEmpty else {
            throw fail("\"\(key)\" must be an array of \(allowEmpty ? 0 : 1) to \(ChatRequest.maxUsersPerRequest) user names")
        }
        var users: [String] = []
        for v in list {
            guard let u = v.stringValue, !u.isEmpty, u.utf8.count <= 256 else { throw fail("\"\(key)\" must hold user names of 1 to 256 bytes") }
            if !users.contains(u) { users.append(u) }
        }
        return users
    }

    public static func chatSend(to: String, clientId: String, text: String, attachments: [String] = []) -> ClientRequest {
        ChatRequest.send(to: .user(to), clientId: clientId, text: text, attachments: attachments).request
    }
    public static func chatSend(group: Int64, clientId: String, text: String, attachments: [String] = []) -> ClientRequest {
        ChatRequest.send(to: .group(group), clientId: clientId, text: text, attachments: attachments).request
    }
    public static func chatCreateGroup(name: String, members: [String]) -> ClientRequest {
        ChatRequest.createGroup(name: name, members: members).request
    }
    public static func chatChangeGroup(_ conversation: Int64, _ change: GroupChange) -> ClientRequest {
        ChatRequest.changeGroup(conversation: conversation, change).request
    }
    public static func chatMembers(_ conversation: Int64) -> ClientRequest { ChatRequest.members(conversation: conversation).request }
    public static func chatPresence(_ users: [String]) -> ClientRequest { ChatRequest.presence(users: users).request }
    public static func chatPrivacy(lastSeen: LastSeenVisibility) -> ClientRequest { ChatRequest.privacy(lastSeen: lastSeen).request }
    public static func chatTyping(_ conversation: Int64, _ typing: Bool = true) -> ClientRequest {
        ChatRequest.typing(conversation: conversation, typing: typing).request
    }
    public static func chatAck(conversation: Int64, seq: Int64, receipt: Int64? = nil) -> ClientRequest {
        ChatRequest.ack([ChatAck(conversation: conversation, seq: seq)], receipt: receipt).request
    }
    /// One `chat.ack` for several conversations (at most `ChatRequest.maxAcks`).
    public static func chatAck(_ acks: [ChatAck], receipt: Int64? = nil) -> ClientRequest {
        ChatRequest.ack(acks, receipt: receipt).request
    }
    public static func chatRead(conversation: Int64, seq: Int64) -> ClientRequest {
        ChatRequest.read(conversation: conversation, seq: seq).request
    }
    public static func chatSync(cursors: [Int64: Int64]? = nil) -> ClientRequest { ChatRequest.sync(cursors: cursors).request }
    public static func chatHistory(conversation: Int64, before: Int64? = nil, limit: Int = 50) -> ClientRequest {
        ChatRequest.history(conversation: conversation, before: before, limit: limit).request
    }
}
