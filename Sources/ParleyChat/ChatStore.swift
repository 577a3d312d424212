import Foundation
import ParleyCore
import ParleyStore

/// One stored chat message, as it goes to a device (`chat.message`).
public struct StoredMessage: Sendable, Equatable {
    /// The server id (the row id: unique, grows with commit order).
    public var id: Int64
    public var conversation: Int64
    /// Per conversation, from 1, without gaps.
    public var seq: Int64
    public var sender: String
    public var senderDevice: String
    public var clientId: String
    public var text: String
    /// Milliseconds since the Unix epoch.
    public var sentAt: Int64
    /// The other user of a direct conversation (from the sender's side: the recipient).
    public var to: String?

    /// The `chat.message` event.
    public func json(ackRequested: Bool = false) -> JSONValue {
        var o: [String: JSONValue] = [
            "type": "chat.message", "conversation": JSONValue(Int(conversation)), "seq": JSONValue(Int(seq)),
            "messageId": JSONValue(Int(id)), "from": .string(sender), "fromDevice": .string(senderDevice),
            "clientId": .string(clientId), "text": .string(text), "sentAt": JSONValue(Int(sentAt)),
        ]
        if let to { o["to"] = .string(to) }
        if ackRequested { o["ack"] = true }
        return .object(o)
    }
}

/// A delivered/read mark of one member: everything up to `seq` of the
/// conversation has reached (or been read by) `user`.
public struct Receipt: Sendable, Equatable {
    public enum Status: String, Sendable { case delivered, read }
    public var id: Int64
    public var conversation: Int64
    public var user: String
    public var status: Status
    public var seq: Int64

    public var json: JSONValue {
        ["type": "chat.receipt", "conversation": JSONValue(Int(conversation)), "user": .string(user),
         "status": .string(status.rawValue), "seq": JSONValue(Int(seq)), "receiptId": JSONValue(Int(id))]
    }
}

/// Why the store refused a chat write: answered to the client.
public enum ChatRefusal: Error, Sendable, Equatable {
    case notMember(conversation: Int64)
    case badRequest(String)
}

/// The chat database (DATA-DIR/chat.db, SQLite in WAL mode) and the
/// operations chat makes on it. Every operation, reads included, runs on
/// the `StoreWriter`'s thread in commit order, so a read (a sync page, a
/// history page) sees exactly the writes whose completions ran before its
/// own; completions run on the writer thread after the group commit.
/// `submit` never blocks: a full queue throws `StoreError.queueFull`.
public final class ChatStore: Sendable {
    public let writer: StoreWriter
    let metrics: ChatMetrics

    /// Opens (creating and migrating) the database at `path`.
    public init(path: String, synchronous: Database.Synchronous = .normal, queueCapacity: Int = 10_000,
                metrics: ChatMetrics = .shared) throws {
        var config = StoreWriter.Config()
        config.options = Database.Options(synchronous: synchronous)
        config.capacity = queueCapacity
        writer = try StoreWriter(path: path, config: config, migrations: Self.migrations)
        self.metrics = metrics
    }

    /// Commits what is queued, then stops the writer thread.
    public func close() { writer.close() }

    static let migrations: [Migration] = [
        Migration("chat schema") { db in
            try db.execute("""
            CREATE TABLE conversations(
                id INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,                 -- 'direct' (groups: #16 step 3)
                direct_a TEXT, direct_b TEXT,       -- a direct conversation's users, a < b
                last_seq INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL,
                UNIQUE(direct_a, direct_b));
            CREATE TABLE members(
                conversation INTEGER NOT NULL REFERENCES conversations(id),
                user TEXT NOT NULL,
                delivered_seq INTEGER NOT NULL DEFAULT 0,
                read_seq INTEGER NOT NULL DEFAULT 0,
                joined_seq INTEGER NOT NULL DEFAULT 0,   -- a member sees messages after this seq
                PRIMARY KEY(conversation, user)) WITHOUT ROWID;
            CREATE INDEX members_by_user ON members(user, conversation);
            CREATE TABLE messages(
                id INTEGER PRIMARY KEY,
                conversation INTEGER NOT NULL REFERENCES conversations(id),
                seq INTEGER NOT NULL,
                sender TEXT NOT NULL,
                sender_device TEXT NOT NULL,
                client_id TEXT NOT NULL,
                body TEXT NOT NULL,
                sent_at INTEGER NOT NULL,
                UNIQUE(conversation, seq),
                UNIQUE(sender, client_id));
            CREATE TABLE cursors(                   -- what each device has acknowledged
                user TEXT NOT NULL, device TEXT NOT NULL, conversation INTEGER NOT NULL,
                delivered_seq INTEGER NOT NULL,
                PRIMARY KEY(user, device, conversation)) WITHOUT ROWID;
            CREATE TABLE devices(
                user TEXT NOT NULL, device TEXT NOT NULL,
                receipt_cursor INTEGER NOT NULL DEFAULT 0,   -- the last receipt id the device acknowledged
                last_seen INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY(user, device)) WITHOUT ROWID;
            CREATE TABLE receipts(
                id INTEGER PRIMARY KEY,
                conversation INTEGER NOT NULL, user TEXT NOT NULL, status TEXT NOT NULL,
                seq INTEGER NOT NULL, at INTEGER NOT NULL);
            CREATE INDEX receipts_by_conversation ON receipts(conversation, id);
            """)
        },
    ]

    // MARK: Operations

    /// What `send` did: the ack, and who to deliver to.
    public struct Sent: Sendable {
        public var message: StoredMessage
        /// The users of the conversation (sender included).
        public var members: [String]
        /// True when `clientId` had been sent before: nothing new was stored.
        public var duplicate: Bool
    }

    /// Stores a message from `sender` (on `device`) to user `to`, giving it
    /// the conversation's next seq; a `clientId` the sender used before
    /// returns that message instead.
    public func send(from sender: String, device: String, to: String, clientId: String, text: String,
                     completion: @escaping @Sendable (Result<Sent, Error>) -> Void) throws {
        try submit({ db in
            if let old = try db.rows("""
                SELECT m.id, m.conversation, m.seq, m.sender_device, m.body, m.sent_at, c.direct_a, c.direct_b
                FROM messages m JOIN conversations c ON c.id = m.conversation WHERE m.sender = ? AND m.client_id = ?
                """, [.text(sender), .text(clientId)], { r in
                    let a = r.string(6) ?? "", b = r.string(7) ?? ""
                    return Sent(message: StoredMessage(id: r.int64(0), conversation: r.int64(1), seq: r.int64(2), sender: sender,
                                                       senderDevice: r.string(3) ?? "", clientId: clientId, text: r.string(4) ?? "",
                                                       sentAt: r.int64(5), to: a == sender ? b : a),
                                members: [a, b], duplicate: true)
                }).first {
                return old
            }
            let (a, b) = sender < to ? (sender, to) : (to, sender)
            let now = Self.nowMilliseconds()
            var conversation: Int64
            var last: Int64
            if let row = try db.rows("SELECT id, last_seq FROM conversations WHERE direct_a = ? AND direct_b = ?",
                                     [.text(a), .text(b)], { ($0.int64(0), $0.int64(1)) }).first {
                (conversation, last) = row
            } else {
                try db.run("INSERT INTO conversations(kind, direct_a, direct_b, created_at) VALUES ('direct', ?, ?, ?)",
                           [.text(a), .text(b), .integer(now)])
                conversation = db.lastInsertRowID
                last = 0
                for u in [a, b] { try db.run("INSERT INTO members(conversation, user) VALUES (?, ?)", [.integer(conversation), .text(u)]) }
            }
            let seq = last + 1
            try db.run("UPDATE conversations SET last_seq = ? WHERE id = ?", [.integer(seq), .integer(conversation)])
            try db.run("INSERT INTO messages(conversation, seq, sender, sender_device, client_id, body, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [.integer(conversation), .integer(seq), .text(sender), .text(device), .text(clientId), .text(text), .integer(now)])
            let message = StoredMessage(id: db.lastInsertRowID, conversation: conversation, seq: seq, sender: sender,
                                        senderDevice: device, clientId: clientId, text: text, sentAt: now, to: to)
            return Sent(message: message, members: [a, b], duplicate: false)
        }, completion: completion)
    }

    /// What a device's ack or a read changed.
    public struct Marked: Sendable {
        /// The new delivered or read mark of the user, when it moved.
        public var receipt: Receipt?
        /// The conversation's users.
        public var members: [String]
    }

    /// Device `device` of `user` has every message of `conversation` up to
    /// `seq`: its cursor moves there, and the user's delivered mark with it
    /// (a `delivered` receipt when it moved). `receipt` moves the device's
    /// receipt cursor.
    public func ack(user: String, device: String, conversation: Int64, seq: Int64, receipt: Int64?,
                    completion: @escaping @Sendable (Result<Marked, Error>) -> Void) throws {
        try submit({ db in
            if let receipt {
                try db.run("""
                    INSERT INTO devices(user, device, receipt_cursor) VALUES (?, ?, ?)
                    ON CONFLICT(user, device) DO UPDATE SET receipt_cursor = max(receipt_cursor, excluded.receipt_cursor)
                    """, [.text(user), .text(device), .integer(receipt)])
            }
            let (last, members) = try Self.membership(db, user: user, conversation: conversation)
            let upTo = min(seq, last)
            try db.run("""
                INSERT INTO cursors(user, device, conversation, delivered_seq) VALUES (?, ?, ?, ?)
                ON CONFLICT(user, device, conversation) DO UPDATE SET delivered_seq = max(delivered_seq, excluded.delivered_seq)
                """, [.text(user), .text(device), .integer(conversation), .integer(upTo)])
            let r = try Self.mark(db, .delivered, user: user, conversation: conversation, seq: upTo)
            return Marked(receipt: r, members: members)
        }, completion: completion)
    }

    /// `user` has read `conversation` up to `seq` (which also counts as delivered).
    public func read(user: String, conversation: Int64, seq: Int64,
                     completion: @escaping @Sendable (Result<Marked, Error>) -> Void) throws {
        try submit({ db in
            let (last, members) = try Self.membership(db, user: user, conversation: conversation)
            let upTo = min(seq, last)
            _ = try Self.mark(db, .delivered, user: user, conversation: conversation, seq: upTo, record: false)
            let r = try Self.mark(db, .read, user: user, conversation: conversation, seq: upTo)
            return Marked(receipt: r, members: members)
        }, completion: completion)
    }

    /// Where a sync reads from: a device's stored cursors, or cursors it names.
    public enum SyncSource: Sendable, Equatable {
        /// After the device's acknowledged cursors, leaving out what the device sent itself.
        case stored
        /// After these (conversation → seq); conversations not named, from their start.
        case cursors([Int64: Int64])
    }

    /// One page of a sync: up to `limit` messages that `device` of `user`
    /// lacks, conversation by conversation in seq order, after `sent`
    /// (conversation → last seq already sent in this sync).
    public func syncPage(user: String, device: String, source: SyncSource, sent: [Int64: Int64], limit: Int,
                         completion: @escaping @Sendable (Result<[StoredMessage], Error>) -> Void) throws {
        try submit({ db in
            // The user's conversations with something after the device's cursor.
            let conversations = try db.rows("""
                SELECT mb.conversation, max(coalesce(cu.delivered_seq, 0), mb.joined_seq), c.last_seq, c.direct_a, c.direct_b
                FROM members mb JOIN conversations c ON c.id = mb.conversation
                LEFT JOIN cursors cu ON cu.user = mb.user AND cu.device = ? AND cu.conversation = mb.conversation
                WHERE mb.user = ? ORDER BY mb.conversation
                """, [.text(device), .text(user)]) { r in
                (conversation: r.int64(0), cursor: r.int64(1), last: r.int64(2), a: r.string(3), b: r.string(4))
            }
            var page: [StoredMessage] = []
            for c in conversations where page.count < limit {
                var from = c.cursor
                var excludeOwn = true
                if case .cursors(let given) = source {
                    from = given[c.conversation] ?? 0
                    excludeOwn = false
                }
                from = max(from, sent[c.conversation] ?? 0)
                guard from < c.last else { continue }
                let rows = try db.rows("""
                    SELECT id, seq, sender, sender_device, client_id, body, sent_at FROM messages
                    WHERE conversation = ? AND seq > ? AND NOT (? AND sender = ? AND sender_device = ?)
                    ORDER BY seq LIMIT ?
                    """, [.integer(c.conversation), .integer(from), .integer(excludeOwn ? 1 : 0), .text(user), .text(device),
                          .integer(Int64(limit - page.count))]) { r in
                    let sender = r.string(2) ?? ""
                    return StoredMessage(id: r.int64(0), conversation: c.conversation, seq: r.int64(1), sender: sender,
                                         senderDevice: r.string(3) ?? "", clientId: r.string(4) ?? "", text: r.string(5) ?? "",
                                         sentAt: r.int64(6), to: c.a == nil ? nil : (c.a == sender ? c.b : c.a))
                }
                page += rows
            }
            return page
        }, completion: completion)
    }

    /// Receipts by others in `user`'s conversations after the device's
    /// receipt cursor: the latest of each (conversation, user, status).
    public func pendingReceipts(user: String, device: String,
                                completion: @escaping @Sendable (Result<[Receipt], Error>) -> Void) throws {
        try submit({ db in
            let cursor = try db.rows("SELECT receipt_cursor FROM devices WHERE user = ? AND device = ?",
                                     [.text(user), .text(device)]) { $0.int64(0) }.first ?? 0
            return try db.rows("""
                SELECT max(r.id), r.conversation, r.user, r.status, max(r.seq) FROM receipts r
                JOIN members mb ON mb.conversation = r.conversation AND mb.user = ?
                WHERE r.id > ? AND r.user != ? GROUP BY r.conversation, r.user, r.status ORDER BY max(r.id)
                """, [.text(user), .integer(cursor), .text(user)]) { r in
                Receipt(id: r.int64(0), conversation: r.int64(1), user: r.string(2) ?? "",
                        status: Receipt.Status(rawValue: r.string(3) ?? "") ?? .delivered, seq: r.int64(4))
            }
        }, completion: completion)
    }

    /// Up to `limit` messages of `conversation` before seq `before`, newest first.
    public func history(user: String, conversation: Int64, before: Int64?, limit: Int,
                        completion: @escaping @Sendable (Result<[StoredMessage], Error>) -> Void) throws {
        try submit({ db in
            let (_, members) = try Self.membership(db, user: user, conversation: conversation)
            let joined = try db.rows("SELECT joined_seq FROM members WHERE conversation = ? AND user = ?",
                                     [.integer(conversation), .text(user)]) { $0.int64(0) }.first ?? 0
            let direct = members.count == 2 ? members : nil
            return try db.rows("""
                SELECT id, seq, sender, sender_device, client_id, body, sent_at FROM messages
                WHERE conversation = ? AND seq < ? AND seq > ? ORDER BY seq DESC LIMIT ?
                """, [.integer(conversation), .integer(before ?? Int64.max), .integer(joined), .integer(Int64(limit))]) { r in
                let sender = r.string(2) ?? ""
                return StoredMessage(id: r.int64(0), conversation: conversation, seq: r.int64(1), sender: sender,
                                     senderDevice: r.string(3) ?? "", clientId: r.string(4) ?? "", text: r.string(5) ?? "",
                                     sentAt: r.int64(6), to: direct?.first { $0 != sender })
            }
        }, completion: completion)
    }

    /// Messages stored in all (the admin view and tests).
    public func messageCount(completion: @escaping @Sendable (Result<Int, Error>) -> Void) throws {
        try submit({ db in Int(try db.rows("SELECT count(*) FROM messages") { $0.int64(0) }.first ?? 0) }, completion: completion)
    }

    // MARK: Helpers (on the writer thread)

    /// The conversation's last seq and users; `notMember` unless `user` is one.
    static func membership(_ db: Database, user: String, conversation: Int64) throws -> (last: Int64, members: [String]) {
        let members = try db.rows("SELECT user FROM members WHERE conversation = ?", [.integer(conversation)]) { $0.string(0) ?? "" }
        guard members.contains(user),
              let last = try db.rows("SELECT last_seq FROM conversations WHERE id = ?", [.integer(conversation)], { $0.int64(0) }).first
        else { throw ChatRefusal.notMember(conversation: conversation) }
        return (last, members)
    }

    /// Moves `user`'s delivered or read mark in `conversation` up to `seq`;
    /// records a receipt when it moved (and `record`).
    static func mark(_ db: Database, _ status: Receipt.Status, user: String, conversation: Int64, seq: Int64,
                     record: Bool = true) throws -> Receipt? {
        let column = status == .delivered ? "delivered_seq" : "read_seq"
        let moved = try db.run("UPDATE members SET \(column) = ? WHERE conversation = ? AND user = ? AND \(column) < ?",
                               [.integer(seq), .integer(conversation), .text(user), .integer(seq)])
        guard moved > 0, record else { return nil }
        try db.run("INSERT INTO receipts(conversation, user, status, seq, at) VALUES (?, ?, ?, ?, ?)",
                   [.integer(conversation), .text(user), .text(status.rawValue), .integer(seq), .integer(nowMilliseconds())])
        return Receipt(id: db.lastInsertRowID, conversation: conversation, user: user, status: status, seq: seq)
    }

    static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Queues `op` on the writer, timing it to its commit.
    private func submit<T: Sendable>(_ op: @escaping @Sendable (Database) throws -> T,
                                     completion: @escaping @Sendable (Result<T, Error>) -> Void) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        let metrics = self.metrics
        let writer = self.writer
        try writer.submit(op) { result in
            metrics.commitSeconds.observe(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            metrics.writerQueue.set(writer.queued)
            completion(result)
        }
        metrics.writerQueue.set(writer.queued)
    }
}
