import Foundation
import ParleyCore
import ParleyProtocol
import ParleyStore
import Synchronization

/// One stored chat message, as it goes to a device (`chat.message`).
public struct StoredMessage: Sendable, Equatable {
    /// A message is text from a user, or a change to a group (created,
    /// renamed, members added or removed, a member left), stored in the
    /// group's sequence like any message so offline members learn of it.
    public enum Kind: String, Sendable { case text, group }

    /// The server id (the row id: unique, grows with commit order).
    public var id: Int64
    public var conversation: Int64
    /// Per conversation, from 1, without gaps.
    public var seq: Int64
    public var sender: String
    public var senderDevice: String
    public var clientId: String
    public var kind: Kind
    /// The text, or for `.group` the change as JSON text.
    public var body: String
    /// Milliseconds since the Unix epoch.
    public var sentAt: Int64
    /// The attachments as JSON text (an array of `{id, size, contentType, thumbnail}`), if any.
    public var attachments: String? = nil
    /// The other user of a direct conversation (from the sender's side: the recipient); nil in a group.
    public var to: String?
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
}

/// Why the store refused a chat operation: answered to the client.
public enum ChatRefusal: Error, Sendable, Equatable {
    case notMember(conversation: Int64)
    case notAdmin(conversation: Int64)
    case notAGroup(conversation: Int64)
    case groupFull(limit: Int)
    case unknownMedia(String)
    case backlogFull(limit: Int)
    case userBacklogFull(user: String, limit: Int)
    /// `PUT /media` over `chat-media-max-bytes-per-user`; `stored`: the bytes are another user's too (keep the file).
    case mediaQuota(limit: Int, stored: Bool)
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
    let receiptIds = ReceiptIds()
    /// Upper bounds of users' backlogs (`chat-max-backlog`), so a send need
    /// not sum a recipient's conversations each time (ChatBounds.swift).
    let backlogBounds = BacklogBounds()

    /// Opens (creating and migrating) the database at `path`.
    /// `commitDelay`: how long the writer lets writes gather before a group commit (`StoreWriter.Config.commitDelay`).
    public init(path: String, synchronous: Database.Synchronous = .normal, queueCapacity: Int = 10_000,
                commitDelay: Duration = .zero, metrics: ChatMetrics = .shared) throws {
        var config = StoreWriter.Config()
        config.options = Database.Options(synchronous: synchronous)
        config.capacity = queueCapacity
        config.commitDelay = commitDelay
        // The WAL is copied back into chat.db (and fsynced) on a thread of its own: the writer never waits for it.
        // Once a second: a page written many times in between is copied once (every 100 ms cost the checkpointer
        // 5 µs per message at 2,000 messages/s, every second 2).
        config.checkpointInterval = .seconds(1)
        config.reruns = metrics.writerReruns
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
                kind TEXT NOT NULL,                 -- 'direct' or 'group'
                direct_a TEXT, direct_b TEXT,       -- a direct conversation's users, a < b
                last_seq INTEGER NOT NULL DEFAULT 0,   -- see ChatStore.lastSeq
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
        Migration("groups") { db in
            try db.execute("""
            ALTER TABLE conversations ADD COLUMN name TEXT;
            ALTER TABLE members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';   -- 'admin' or 'member'
            ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'text';    -- 'text' or 'group' (a change, as JSON)
            """)
        },
        Migration("presence") { db in
            try db.execute("""
            CREATE TABLE users(
                user TEXT PRIMARY KEY,
                last_seen INTEGER,                              -- ms since the epoch, when the last device went
                last_seen_visibility TEXT NOT NULL DEFAULT 'contacts') WITHOUT ROWID;
            """)
        },
        Migration("media") { db in
            try db.execute("""
            CREATE TABLE media(
                id TEXT PRIMARY KEY,                    -- hex SHA-256 of the bytes, the file DATA-DIR/media/ID
                size INTEGER NOT NULL, content_type TEXT NOT NULL,
                thumbnail INTEGER NOT NULL DEFAULT 0,   -- DATA-DIR/media/ID.jpg exists
                created_at INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE media_owners(id TEXT NOT NULL, user TEXT NOT NULL, PRIMARY KEY(id, user)) WITHOUT ROWID;
            CREATE TABLE message_media(
                media TEXT NOT NULL, conversation INTEGER NOT NULL, seq INTEGER NOT NULL,
                PRIMARY KEY(media, conversation, seq)) WITHOUT ROWID;
            ALTER TABLE messages ADD COLUMN attachments TEXT;   -- JSON array, as in chat.message
            """)
        },
        // Receipt pruning (ChatBounds.swift) finds a newer receipt of the same member, conversation and status.
        Migration("receipts latest") { db in
            try db.execute("CREATE INDEX IF NOT EXISTS receipts_latest ON receipts(conversation, user, status, id)")
        },
        // Every receipt was a row in three b-trees; receipts_latest also serves lookups by conversation
        // (a sync's pending receipts), so each receipt now costs two.
        Migration("receipts one index") { db in
            try db.execute("DROP INDEX IF EXISTS receipts_by_conversation")
        },
        // conversations.last_seq is no longer written per message (see lastSeq): nothing to change, but an
        // older build, which takes last_seq as the last seq, must not open the database again.
        Migration("last seq from messages") { _ in },
        // A receipt was a row appended to a log (a table and an index, two pages written per receipt) that a
        // prune thinned to the latest of each member, conversation and status. Now that latest is the one row,
        // upserted in place: its id (a device's receipt cursor counts in them) is the next receipt id
        // (ReceiptIds), so what a device has not acknowledged is still the rows with a greater id.
        Migration("receipts one row per member and status") { db in
            try db.execute("""
            CREATE TABLE receipts_new(
                conversation INTEGER NOT NULL, user TEXT NOT NULL, status TEXT NOT NULL,
                id INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
                PRIMARY KEY(conversation, user, status)) WITHOUT ROWID;
            INSERT INTO receipts_new SELECT conversation, user, status, max(id), max(seq), max(at) FROM receipts
                GROUP BY conversation, user, status;
            DROP TABLE receipts;
            ALTER TABLE receipts_new RENAME TO receipts;
            """)
        },
        // A prune asks, for every message, whether a device's cursor in its conversation is behind it: without
        // this index each question scanned every cursor (20 s of the writer, stalling every operation, for
        // 120,000 messages and 10,000 cursors). An ack moves only delivered_seq, which the index leaves out,
        // so acks do not write it; a device's first ack in a conversation does.
        Migration("cursors by conversation") { db in
            try db.execute("CREATE INDEX IF NOT EXISTS cursors_by_conversation ON cursors(conversation)")
        },
    ]

    // MARK: Messages

    /// What `send` (or a group change) stored: the ack, and who to deliver to.
    public struct Sent: Sendable {
        public var message: StoredMessage
        /// The users to deliver to (the conversation's members, sender
        /// included; for a removal, the removed too).
        public var members: [String]
        /// True when `clientId` had been sent before: nothing new was stored.
        public var duplicate: Bool
    }

    /// Stores a message from `sender` (on `device`) to a user or a group,
    /// giving it the conversation's next seq; a `clientId` the sender used
    /// before returns that message instead.
    public func send(from sender: String, device: String, to target: ChatTarget, clientId: String, text: String,
                     attachments: [String] = [], maxUndelivered: Int = Int.max, maxBacklog: Int = Int.max,
                     completion: @escaping @Sendable (Result<Sent, Error>) -> Void) throws {
        try submit({ db in
            if let old = try db.rows("SELECT conversation, seq FROM messages WHERE sender = ? AND client_id = ?",
                                     [.text(sender), .text(clientId)], { ($0.int64(0), $0.int64(1)) }).first {
                let info = try Self.conversation(db, old.0)!
                let message = try Self.messages(db, info, where: "seq = ?", [.integer(old.1)]).first!
                return Sent(message: message, members: [], duplicate: true)
            }
            // Every check that can refuse runs before the first write: a
            // refusal after a write would make the writer run its whole
            // batch again (StoreWriter), at a client's will.
            var described: [JSONValue] = []
            for id in attachments {
                guard let m = try Self.media(db, id, readableBy: sender) else { throw ChatRefusal.unknownMedia(id) }
                described.append(["id": .string(id), "size": JSONValue(Int(m.size)), "contentType": .string(m.contentType),
                                  "thumbnail": .bool(m.thumbnail)])
            }
            var info: Conversation
            let members: [String]
            switch target {
            case .user(let to):
                let (a, b) = sender < to ? (sender, to) : (to, sender)
                members = [a, b]
                let found = try Self.direct(db, a, b, delivered: to)
                // What the recipient has not had yet waits in the store: bounded per conversation.
                if let (c, delivered) = found, c.last - delivered >= Int64(maxUndelivered) {
                    throw ChatRefusal.backlogFull(limit: maxUndelivered)
                }
                info = found?.0 ?? Conversation(id: 0, isGroup: false, a: a, b: b, last: 0)
                try self.backlogBounds.check(db, info, members: members, sender: sender, limit: maxBacklog)
                if found == nil { info.id = try Self.createDirect(db, a, b) }
            case .group(let id):
                (info, members) = try Self.membership(db, user: sender, conversation: id)
                try self.backlogBounds.check(db, info, members: members, sender: sender, limit: maxBacklog)
            }
            let message = try Self.append(db, info, sender: sender, device: device, clientId: clientId, kind: .text, body: text,
                                          attachments: described.isEmpty ? nil : JSONValue.array(described).serialized)
            for id in attachments {
                try db.run("INSERT OR IGNORE INTO message_media(media, conversation, seq) VALUES (?, ?, ?)",
                           [.text(id), .integer(info.id), .integer(message.seq)])
            }
            self.backlogBounds.added(for: members)
            return Sent(message: message, members: members, duplicate: false)
        }, completion: completion)
    }

    /// Creates a group of `creator` (its administrator) and `members`; its first message is the `created` change.
    public func createGroup(creator: String, device: String, name: String, members: [String], maxMembers: Int,
                            completion: @escaping @Sendable (Result<Sent, Error>) -> Void) throws {
        try submit({ db in
            let all = [creator] + members.filter { $0 != creator }
            guard all.count <= maxMembers else { throw ChatRefusal.groupFull(limit: maxMembers) }
            try db.run("INSERT INTO conversations(kind, name, created_at) VALUES ('group', ?, ?)", [.text(name), .integer(Self.nowMilliseconds())])
            let id = db.lastInsertRowID
            for u in all {
                try db.run("INSERT INTO members(conversation, user, role) VALUES (?, ?, ?)",
                           [.integer(id), .text(u), .text(u == creator ? "admin" : "member")])
            }
            let info = Conversation(id: id, isGroup: true, a: nil, b: nil, last: 0)
            let event: JSONValue = ["action": "created", "name": .string(name), "members": .array(all.map { .string($0) }),
                                    "admins": [.string(creator)]]
            self.backlogBounds.forgetAll() // a group event adds to every member's backlog
            let m = try Self.append(db, info, sender: creator, device: device, clientId: Self.eventId(), kind: .group, body: event.serialized)
            return Sent(message: m, members: all, duplicate: false)
        }, completion: completion)
    }

    /// Renames, adds or removes members (administrators only), or leaves
    /// (any member); the change is the group's next message.
    public func changeGroup(_ conversation: Int64, _ change: GroupChange, by user: String, device: String, maxMembers: Int,
                            completion: @escaping @Sendable (Result<Sent, Error>) -> Void) throws {
        try submit({ db in
            let (info, members) = try Self.membership(db, user: user, conversation: conversation)
            guard info.isGroup else { throw ChatRefusal.notAGroup(conversation: conversation) }
            let role = try db.rows("SELECT role FROM members WHERE conversation = ? AND user = ?",
                                   [.integer(conversation), .text(user)]) { $0.string(0) }.first ?? nil
            if change != .leave, role != "admin" { throw ChatRefusal.notAdmin(conversation: conversation) }
            var event: [String: JSONValue]
            var deliverTo = members
            var gone: [String] = []
            switch change {
            case .rename(let name):
                try db.run("UPDATE conversations SET name = ? WHERE id = ?", [.text(name), .integer(conversation)])
                event = ["action": "renamed", "name": .string(name)]
            case .add(let users):
                let new = users.filter { !members.contains($0) }
                guard members.count + new.count <= maxMembers else { throw ChatRefusal.groupFull(limit: maxMembers) }
                for u in new {
                    // Members see the group from the change that added them on.
                    try db.run("INSERT INTO members(conversation, user, joined_seq) VALUES (?, ?, ?)",
                               [.integer(conversation), .text(u), .integer(info.last)])
                }
                deliverTo += new
                event = ["action": "added", "members": .array(new.map { .string($0) })]
            case .remove(let users):
                gone = users.filter { members.contains($0) && $0 != user }
                event = ["action": "removed", "members": .array(gone.map { .string($0) })]
            case .leave:
                gone = [user]
                event = ["action": "left"]
            }
            // The change goes to the removed too: it is the last they get.
            self.backlogBounds.forgetAll() // a group event adds to every member's backlog
            let m = try Self.append(db, info, sender: user, device: device, clientId: Self.eventId(), kind: .group,
                                    body: JSONValue.object(event).serialized)
            for u in gone { try db.run("DELETE FROM members WHERE conversation = ? AND user = ?", [.integer(conversation), .text(u)]) }
            if !gone.isEmpty {
                // A group keeps an administrator while it has members.
                let admins = try db.rows("SELECT count(*) FROM members WHERE conversation = ? AND role = 'admin'",
                                         [.integer(conversation)]) { $0.int64(0) }.first ?? 0
                if admins == 0 {
                    try db.run("""
                        UPDATE members SET role = 'admin' WHERE conversation = ?1
                        AND user = (SELECT min(user) FROM members WHERE conversation = ?1)
                        """, [.integer(conversation)])
                }
            }
            return Sent(message: m, members: deliverTo, duplicate: false)
        }, completion: completion)
    }

    /// One member of a group, as `chat.group.members` lists it.
    public struct Member: Sendable, Equatable {
        public var user: String
        public var admin: Bool
        public var delivered: Int64
        public var read: Int64
    }

    /// A group's name and members (for a member of it).
    public func members(of conversation: Int64, for user: String,
                        completion: @escaping @Sendable (Result<(name: String, last: Int64, members: [Member]), Error>) -> Void) throws {
        try submit({ db in
            let (info, _) = try Self.membership(db, user: user, conversation: conversation)
            guard info.isGroup else { throw ChatRefusal.notAGroup(conversation: conversation) }
            let name = try db.rows("SELECT name FROM conversations WHERE id = ?", [.integer(conversation)]) { $0.string(0) ?? "" }.first ?? ""
            let members = try db.rows("SELECT user, role, delivered_seq, read_seq FROM members WHERE conversation = ? ORDER BY user",
                                      [.integer(conversation)]) { r in
                Member(user: r.string(0) ?? "", admin: r.string(1) == "admin", delivered: r.int64(2), read: r.int64(3))
            }
            return (name, info.last, members)
        }, completion: completion)
    }

    // MARK: Media

    /// A stored attachment.
    public struct Media: Sendable, Equatable {
        public var size: Int64
        public var contentType: String
        public var thumbnail: Bool
    }

    /// Records that `owner` uploaded media `id` (stored in DATA-DIR/media by then).
    public func registerMedia(_ id: String, size: Int, contentType: String, thumbnail: Bool, owner: String, quota: Int = Int.max,
                              completion: @escaping @Sendable (Result<Media, Error>) -> Void) throws {
        try submit({ db in
            try Self.checkMediaQuota(db, id, size: size, owner: owner, quota: quota)
            try db.run("INSERT OR IGNORE INTO media(id, size, content_type, thumbnail, created_at) VALUES (?, ?, ?, ?, ?)",
                       [.text(id), .integer(Int64(size)), .text(contentType), .integer(thumbnail ? 1 : 0), .integer(Self.nowMilliseconds())])
            if thumbnail { try db.run("UPDATE media SET thumbnail = 1 WHERE id = ?", [.text(id)]) }
            try db.run("INSERT OR IGNORE INTO media_owners(id, user) VALUES (?, ?)", [.text(id), .text(owner)])
            return try Self.media(db, id, readableBy: owner)!
        }, completion: completion)
    }

    /// Media `id` if `user` may read it (it uploaded it, or it is attached to a
    /// message of a conversation the user is in, sent since the user joined); else nil.
    public func media(_ id: String, readableBy user: String, completion: @escaping @Sendable (Result<Media?, Error>) -> Void) throws {
        try submit({ db in try Self.media(db, id, readableBy: user) }, completion: completion)
    }

    static func media(_ db: Database, _ id: String, readableBy user: String) throws -> Media? {
        try db.rows("""
            SELECT size, content_type, thumbnail FROM media WHERE id = ?1 AND (
                EXISTS (SELECT 1 FROM media_owners WHERE id = ?1 AND user = ?2)
                OR EXISTS (SELECT 1 FROM message_media mm JOIN members mb ON mb.conversation = mm.conversation AND mb.user = ?2
                           WHERE mm.media = ?1 AND mm.seq > mb.joined_seq))
            """, [.text(id), .text(user)]) { r in Media(size: r.int64(0), contentType: r.string(1) ?? "", thumbnail: r.int64(2) != 0) }.first
    }

    // MARK: Presence

    /// The users who share a conversation with `user`, and whether they may see its presence.
    public func contacts(of user: String,
                         completion: @escaping @Sendable (Result<(contacts: [String], visible: Bool), Error>) -> Void) throws {
        try submit({ db in
            let visibility = try db.rows("SELECT last_seen_visibility FROM users WHERE user = ?", [.text(user)]) { $0.string(0) }.first ?? nil
            return (try Self.contacts(db, user), visibility != LastSeenVisibility.nobody.rawValue)
        }, completion: completion)
    }

    /// `user`'s last device went at `at` (ms since the epoch).
    public func lastSeen(_ user: String, at: Int64) throws {
        try submit({ db in
            try db.run("INSERT INTO users(user, last_seen) VALUES (?, ?) ON CONFLICT(user) DO UPDATE SET last_seen = excluded.last_seen",
                       [.text(user), .integer(at)])
        }, completion: { _ in })
    }

    public func setPrivacy(_ user: String, lastSeen: LastSeenVisibility, completion: @escaping @Sendable (Result<Void, Error>) -> Void) throws {
        try submit({ db in
            try db.run("""
                INSERT INTO users(user, last_seen_visibility) VALUES (?, ?)
                ON CONFLICT(user) DO UPDATE SET last_seen_visibility = excluded.last_seen_visibility
                """, [.text(user), .text(lastSeen.rawValue)])
        }, completion: completion)
    }

    /// For each of `users`: nil when `asker` may not see it (no shared
    /// conversation, or its setting is `nobody`), else its last seen (nil if never).
    public func lastSeen(of users: [String], asker: String,
                         completion: @escaping @Sendable (Result<[(user: String, visible: Bool, lastSeen: Int64?)], Error>) -> Void) throws {
        try submit({ db in
            let contacts = Set(try Self.contacts(db, asker))
            return try users.map { u in
                let row = try db.rows("SELECT last_seen, last_seen_visibility FROM users WHERE user = ?", [.text(u)]) { r in
                    (r.isNull(0) ? nil : r.int64(0), r.string(1))
                }.first
                let visible = contacts.contains(u) && row?.1 != LastSeenVisibility.nobody.rawValue
                return (u, visible, visible ? row?.0 ?? nil : nil)
            }
        }, completion: completion)
    }

    /// The members of `conversation` (for typing), if `user` is one.
    public func members(of conversation: Int64, user: String, completion: @escaping @Sendable (Result<[String], Error>) -> Void) throws {
        try submit({ db in try Self.membership(db, user: user, conversation: conversation).1 }, completion: completion)
    }

    static func contacts(_ db: Database, _ user: String) throws -> [String] {
        try db.rows("""
            SELECT DISTINCT m2.user FROM members m1 JOIN members m2 ON m2.conversation = m1.conversation
            WHERE m1.user = ?1 AND m2.user != ?1
            """, [.text(user)]) { $0.string(0) ?? "" }
    }

    // MARK: Receipts

    /// Who to tell that a mark moved, and for a group, how far their own latest message in the range got.
    public struct Notice: Sendable {
        public var user: String
        /// Group only: the seq of `user`'s latest message the mark passed, and how many of the
        /// other members have it delivered and read.
        public var summary: (seq: Int64, delivered: Int, read: Int, of: Int)?
    }

    /// What a device's ack or a read changed.
    public struct Marked: Sendable {
        /// The new delivered or read mark of the user, when it moved.
        public var receipt: Receipt?
        /// Who to tell.
        public var notify: [Notice]
    }

    /// Device `device` of `user` has every message of `conversation` up to
    /// `seq`: its cursor moves there, and the user's delivered mark with it
    /// (a `delivered` receipt when it moved). `receipt` moves the device's
    /// receipt cursor.
    public func ack(user: String, device: String, conversation: Int64, seq: Int64, receipt: Int64?,
                    completion: @escaping @Sendable (Result<Marked, Error>) -> Void) throws {
        try submit({ db in
            try Self.ack(db, self.receiptIds, user: user, device: device, [ChatAck(conversation: conversation, seq: seq)], receipt: receipt)[0]
        }, completion: completion)
    }

    /// `ack` for several conversations in one operation (one `chat.ack` with
    /// `acks`): what each moved, in the order given (a conversation named
    /// twice counts once, with its highest seq). Not a member of one of
    /// them: `notMember`, and none of them is applied.
    public func ack(user: String, device: String, acks: [ChatAck], receipt: Int64?,
                    completion: @escaping @Sendable (Result<[Marked], Error>) -> Void) throws {
        try submit({ db in try Self.ack(db, self.receiptIds, user: user, device: device, acks, receipt: receipt) }, completion: completion)
    }

    static func ack(_ db: Database, _ ids: ReceiptIds, user: String, device: String, _ acks: [ChatAck], receipt: Int64?) throws -> [Marked] {
        var highest: [Int64: Int64] = [:], order: [Int64] = []
        for a in acks {
            if let s = highest[a.conversation] { highest[a.conversation] = max(s, a.seq) } else {
                highest[a.conversation] = a.seq
                order.append(a.conversation)
            }
        }
        // Membership of every conversation is checked before the first
        // write: a refusal after a write would make the writer run its
        // whole batch again (StoreWriter), at a client's will.
        let checked = try order.map { try Self.member(db, user: user, conversation: $0) }
        if let receipt {
            try db.run("""
                INSERT INTO devices(user, device, receipt_cursor) VALUES (?, ?, ?)
                ON CONFLICT(user, device) DO UPDATE SET receipt_cursor = max(receipt_cursor, excluded.receipt_cursor)
                """, [.text(user), .text(device), .integer(receipt)])
        }
        return try zip(order, checked).map { conversation, m in
            let upTo = min(highest[conversation]!, m.info.last)
            try db.run("""
                INSERT INTO cursors(user, device, conversation, delivered_seq) VALUES (?, ?, ?, ?)
                ON CONFLICT(user, device, conversation) DO UPDATE SET delivered_seq = max(delivered_seq, excluded.delivered_seq)
                """, [.text(user), .text(device), .integer(conversation), .integer(upTo)])
            return try Self.mark(db, ids, .delivered, m.info, m.members, user: user, seq: upTo, old: m.delivered)
        }
    }

    /// Receipts stored (tests and the admin view): one per member of a conversation and status at most.
    public func receiptCount(completion: @escaping @Sendable (Result<Int, Error>) -> Void) throws {
        try submit({ db in Int(try db.rows("SELECT count(*) FROM receipts") { $0.int64(0) }.first ?? 0) }, completion: completion)
    }

    /// `user` has read `conversation` up to `seq` (which also counts as delivered).
    public func read(user: String, conversation: Int64, seq: Int64,
                     completion: @escaping @Sendable (Result<Marked, Error>) -> Void) throws {
        try submit({ db in
            let m = try Self.member(db, user: user, conversation: conversation)
            let upTo = min(seq, m.info.last)
            try db.run("UPDATE members SET delivered_seq = max(delivered_seq, ?) WHERE conversation = ? AND user = ?",
                       [.integer(upTo), .integer(conversation), .text(user)])
            return try Self.mark(db, self.receiptIds, .read, m.info, m.members, user: user, seq: upTo, old: m.read)
        }, completion: completion)
    }

    // MARK: Sync and history

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
            // The user's conversations, with the device's cursor in each.
            let conversations = try db.rows("""
                SELECT c.id, c.kind, c.direct_a, c.direct_b, \(Self.lastSeq), mb.joined_seq, coalesce(cu.delivered_seq, 0)
                FROM members mb JOIN conversations c ON c.id = mb.conversation
                LEFT JOIN cursors cu ON cu.user = mb.user AND cu.device = ? AND cu.conversation = mb.conversation
                WHERE mb.user = ? ORDER BY mb.conversation
                """, [.text(device), .text(user)]) { r in
                (info: Conversation(row: r), joined: r.int64(5), cursor: r.int64(6))
            }
            var page: [StoredMessage] = []
            for c in conversations where page.count < limit {
                var from = c.cursor
                var excludeOwn = true
                if case .cursors(let given) = source {
                    from = given[c.info.id] ?? 0
                    excludeOwn = false
                }
                from = max(from, c.joined, sent[c.info.id] ?? 0)
                guard from < c.info.last else { continue }
                page += try Self.messages(db, c.info, where: "seq > ? AND NOT (? AND sender = ? AND sender_device = ?) ORDER BY seq LIMIT ?",
                                          [.integer(from), .integer(excludeOwn ? 1 : 0), .text(user), .text(device),
                                           .integer(Int64(limit - page.count))])
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
                SELECT r.id, r.conversation, r.user, r.status, r.seq FROM receipts r
                JOIN members mb ON mb.conversation = r.conversation AND mb.user = ?
                WHERE r.id > ? AND r.user != ? ORDER BY r.id
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
            let (info, _) = try Self.membership(db, user: user, conversation: conversation)
            let joined = try db.rows("SELECT joined_seq FROM members WHERE conversation = ? AND user = ?",
                                     [.integer(conversation), .text(user)]) { $0.int64(0) }.first ?? 0
            return try Self.messages(db, info, where: "seq < ? AND seq > ? ORDER BY seq DESC LIMIT ?",
                                     [.integer(before ?? Int64.max), .integer(joined), .integer(Int64(limit))])
        }, completion: completion)
    }

    // MARK: Retention and the admin view

    /// How long a message is kept once every member has it: delivered to
    /// every member, and acknowledged by every device that has synced the
    /// conversation. Messages not yet delivered are kept until they are.
    public enum Retention: Sendable, Equatable {
        /// Deleted once delivered (the default, as WhatsApp's servers do).
        case delivered
        /// Kept this many days after they were sent, once delivered.
        case days(Int)
        /// Never deleted.
        case forever
    }

    /// Deletes the messages `retention` no longer keeps; returns how many.
    public func prune(_ retention: Retention, completion: @escaping @Sendable (Result<Int, Error>) -> Void) throws {
        try submit({ db in
            let before: Int64
            switch retention {
            case .forever: return 0
            case .delivered: before = Int64.max
            case .days(let d): before = Self.nowMilliseconds() - Int64(d) * 86_400_000
            }
            // A message goes once every other member has it, and every device that syncs the conversation
            // (but the one that sent it) has acknowledged it.
            let conversations = try db.rows("SELECT DISTINCT conversation FROM messages") { $0.int64(0) }
            var deleted = 0
            for conversation in conversations {
                // The newest message may go: its seq stays the conversation's last (see lastSeq).
                try db.run("""
                    UPDATE conversations SET last_seq = (SELECT max(seq) FROM messages WHERE conversation = ?1)
                    WHERE id = ?1 AND last_seq < (SELECT max(seq) FROM messages WHERE conversation = ?1)
                    """, [.integer(conversation)])
                deleted += try db.run(Self.pruneSQL, [.integer(conversation), .integer(before)])
            }
            return deleted
        }, completion: completion)
    }

    /// A conversation's (?1) messages sent before ?2 that every member and device has (see `prune`). Each
    /// message's questions are index searches (ChatStoreMigrationTests holds it to that): a scan here runs once
    /// per stored message.
    static let pruneSQL = """
        DELETE FROM messages WHERE conversation = ?1 AND sent_at < ?2
        AND NOT EXISTS (SELECT 1 FROM members mb WHERE mb.conversation = ?1 AND mb.user != messages.sender
                        AND mb.delivered_seq < messages.seq AND mb.joined_seq < messages.seq)
        AND NOT EXISTS (SELECT 1 FROM cursors cu WHERE cu.conversation = ?1 AND cu.delivered_seq < messages.seq
                        AND NOT (cu.user = messages.sender AND cu.device = messages.sender_device))
        """

    /// Totals for `GET /admin/chat`.
    public func totals(completion: @escaping @Sendable (Result<JSONValue, Error>) -> Void) throws {
        try submit({ db in
            func count(_ sql: String) throws -> Int { Int(try db.rows(sql) { $0.int64(0) }.first ?? 0) }
            return [
                "messages": JSONValue(try count("SELECT count(*) FROM messages")),
                "conversations": JSONValue(try count("SELECT count(*) FROM conversations WHERE kind = 'direct'")),
                "groups": JSONValue(try count("SELECT count(*) FROM conversations WHERE kind = 'group'")),
                "users": JSONValue(try count("SELECT count(DISTINCT user) FROM members")),
                "media": JSONValue(try count("SELECT count(*) FROM media")),
                "mediaBytes": JSONValue(try count("SELECT coalesce(sum(size), 0) FROM media")),
            ]
        }, completion: completion)
    }

    /// One user's conversations for `GET /admin/chat/users/{user}`: id, kind, name or peer, role, marks, messages stored.
    public func user(_ user: String, completion: @escaping @Sendable (Result<JSONValue, Error>) -> Void) throws {
        try submit({ db in
            let conversations = try db.rows("""
                SELECT c.id, c.kind, c.name, c.direct_a, c.direct_b, \(Self.lastSeq), mb.role, mb.delivered_seq, mb.read_seq,
                       (SELECT count(*) FROM messages WHERE conversation = c.id)
                FROM members mb JOIN conversations c ON c.id = mb.conversation WHERE mb.user = ? ORDER BY c.id
                """, [.text(user)]) { r -> JSONValue in
                var o: [String: JSONValue] = ["conversation": JSONValue(Int(r.int64(0))), "kind": .string(r.string(1) ?? ""),
                                              "lastSeq": JSONValue(Int(r.int64(5))), "role": .string(r.string(6) ?? ""),
                                              "delivered": JSONValue(Int(r.int64(7))), "read": JSONValue(Int(r.int64(8))),
                                              "stored": JSONValue(Int(r.int64(9)))]
                if let name = r.string(2) { o["name"] = .string(name) }
                if let a = r.string(3), let b = r.string(4) { o["with"] = .string(a == user ? b : a) }
                return .object(o)
            }
            let sent = try db.rows("SELECT count(*) FROM messages WHERE sender = ?", [.text(user)]) { Int($0.int64(0)) }.first ?? 0
            let lastSeen = try db.rows("SELECT last_seen FROM users WHERE user = ?", [.text(user)]) { $0.isNull(0) ? nil : Int($0.int64(0)) }.first ?? nil
            return ["user": .string(user), "conversations": .array(conversations), "stored": JSONValue(sent),
                    "lastSeen": lastSeen.map { JSONValue($0) } ?? .null]
        }, completion: completion)
    }

    /// Messages stored in all (the admin view and tests).
    public func messageCount(completion: @escaping @Sendable (Result<Int, Error>) -> Void) throws {
        try submit({ db in Int(try db.rows("SELECT count(*) FROM messages") { $0.int64(0) }.first ?? 0) }, completion: completion)
    }

    // MARK: Helpers (on the writer thread)

    struct Conversation {
        var id: Int64
        var isGroup: Bool
        var a: String?
        var b: String?
        var last: Int64

        /// From columns id, kind, direct_a, direct_b and `lastSeq`.
        init(row r: Statement) {
            self.init(id: r.int64(0), isGroup: r.string(1) == "group", a: r.string(2), b: r.string(3), last: r.int64(4))
        }
        init(id: Int64, isGroup: Bool, a: String?, b: String?, last: Int64) {
            self.id = id; self.isGroup = isGroup; self.a = a; self.b = b; self.last = last
        }
    }

    /// SQL for the last seq of conversation `c` (a query's alias): its newest
    /// message's, or `conversations.last_seq` when there is none.
    /// `last_seq` is not written per message (that was a page of the
    /// conversations table dirtied, and written to the WAL, per send): a
    /// prune brings it up to date before it deletes a conversation's newest
    /// messages, so the messages' seqs never go back.
    static let lastSeq = "max(c.last_seq, coalesce((SELECT seq FROM messages WHERE conversation = c.id ORDER BY seq DESC LIMIT 1), 0))"

    static func conversation(_ db: Database, _ id: Int64) throws -> Conversation? {
        try db.rows("SELECT c.id, c.kind, c.direct_a, c.direct_b, \(lastSeq) FROM conversations c WHERE c.id = ?", [.integer(id)]) {
            Conversation(row: $0)
        }.first
    }

    /// The direct conversation of users `a` < `b`, if they have one, and how far `recipient` has it delivered.
    static func direct(_ db: Database, _ a: String, _ b: String, delivered recipient: String) throws -> (Conversation, delivered: Int64)? {
        try db.rows("""
            SELECT c.id, c.kind, c.direct_a, c.direct_b, \(lastSeq), m.delivered_seq FROM conversations c
            JOIN members m ON m.conversation = c.id AND m.user = ?3 WHERE c.direct_a = ?1 AND c.direct_b = ?2
            """, [.text(a), .text(b), .text(recipient)], { (Conversation(row: $0), $0.int64(5)) }).first
    }

    /// Creates the direct conversation of users `a` < `b` (on their first message); its id.
    static func createDirect(_ db: Database, _ a: String, _ b: String) throws -> Int64 {
        try db.run("INSERT INTO conversations(kind, direct_a, direct_b, created_at) VALUES ('direct', ?, ?, ?)",
                   [.text(a), .text(b), .integer(nowMilliseconds())])
        let id = db.lastInsertRowID
        for u in [a, b] { try db.run("INSERT INTO members(conversation, user) VALUES (?, ?)", [.integer(id), .text(u)]) }
        return id
    }

    /// The conversation and its users; `notMember` unless `user` is one.
    static func membership(_ db: Database, user: String, conversation: Int64) throws -> (Conversation, [String]) {
        let m = try member(db, user: user, conversation: conversation)
        return (m.info, m.members)
    }

    /// `membership`, and `user`'s delivered and read marks: one query for a
    /// direct conversation (its users are the conversation's), two for a group.
    static func member(_ db: Database, user: String, conversation: Int64) throws
        -> (info: Conversation, members: [String], delivered: Int64, read: Int64) {
        guard let row = try db.rows("""
            SELECT c.id, c.kind, c.direct_a, c.direct_b, \(lastSeq), m.delivered_seq, m.read_seq
            FROM members m JOIN conversations c ON c.id = m.conversation WHERE m.conversation = ? AND m.user = ?
            """, [.integer(conversation), .text(user)], { (Conversation(row: $0), $0.int64(5), $0.int64(6)) }).first else {
            throw ChatRefusal.notMember(conversation: conversation)
        }
        let members: [String]
        if !row.0.isGroup, let a = row.0.a, let b = row.0.b {
            members = [a, b]
        } else {
            members = try db.rows("SELECT user FROM members WHERE conversation = ?", [.integer(conversation)]) { $0.string(0) ?? "" }
        }
        return (row.0, members, row.1, row.2)
    }

    /// Stores the conversation's next message (the newest message is where its last seq is kept: see `lastSeq`).
    static func append(_ db: Database, _ c: Conversation, sender: String, device: String, clientId: String,
                       kind: StoredMessage.Kind, body: String, attachments: String? = nil) throws -> StoredMessage {
        let seq = c.last + 1, now = nowMilliseconds()
        try db.run("""
            INSERT INTO messages(conversation, seq, sender, sender_device, client_id, kind, body, sent_at, attachments)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.integer(c.id), .integer(seq), .text(sender), .text(device), .text(clientId), .text(kind.rawValue), .text(body),
                  .integer(now), attachments.map { .text($0) } ?? .null])
        return StoredMessage(id: db.lastInsertRowID, conversation: c.id, seq: seq, sender: sender, senderDevice: device,
                             clientId: clientId, kind: kind, body: body, sentAt: now, attachments: attachments,
                             to: c.isGroup ? nil : (c.a == sender ? c.b : c.a))
    }

    /// Messages of `c` matching `condition` (SQL after `WHERE conversation = ? AND`).
    static func messages(_ db: Database, _ c: Conversation, where condition: String, _ values: [SQLValue]) throws -> [StoredMessage] {
        try db.rows("""
            SELECT id, seq, sender, sender_device, client_id, kind, body, sent_at, attachments FROM messages WHERE conversation = ? AND \(condition)
            """, [.integer(c.id)] + values) { r in
            let sender = r.string(2) ?? ""
            return StoredMessage(id: r.int64(0), conversation: c.id, seq: r.int64(1), sender: sender, senderDevice: r.string(3) ?? "",
                                 clientId: r.string(4) ?? "", kind: StoredMessage.Kind(rawValue: r.string(5) ?? "") ?? .text,
                                 body: r.string(6) ?? "", sentAt: r.int64(7), attachments: r.string(8),
                                 to: c.isGroup ? nil : (c.a == sender ? c.b : c.a))
        }
    }

    /// Moves `user`'s delivered or read mark up to `seq`. When it moved:
    /// records a receipt (the member's one row of that status, with the next id), and says who to tell: the other user of a direct
    /// conversation; in a group, each member whose messages it passed, with
    /// a count for their latest one.
    /// `old`: the mark before (from `member`, read in the same operation).
    static func mark(_ db: Database, _ ids: ReceiptIds, _ status: Receipt.Status, _ c: Conversation, _ members: [String],
                     user: String, seq: Int64, old: Int64) throws -> Marked {
        let column = status == .delivered ? "delivered_seq" : "read_seq"
        guard seq > old else { return Marked(receipt: nil, notify: []) }
        try db.run("UPDATE members SET \(column) = ? WHERE conversation = ? AND user = ?", [.integer(seq), .integer(c.id), .text(user)])
        let id = try ids.next(db)
        try db.run("""
            INSERT INTO receipts(conversation, user, status, id, seq, at) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT(conversation, user, status) DO UPDATE SET id = excluded.id, seq = excluded.seq, at = excluded.at
            """, [.integer(c.id), .text(user), .text(status.rawValue), .integer(id), .integer(seq), .integer(nowMilliseconds())])
        let receipt = Receipt(id: id, conversation: c.id, user: user, status: status, seq: seq)
        guard c.isGroup else { return Marked(receipt: receipt, notify: members.filter { $0 != user }.map { Notice(user: $0) }) }
        let senders = try db.rows("""
            SELECT sender, max(seq) FROM messages WHERE conversation = ? AND seq > ? AND seq <= ? AND sender != ? AND kind = 'text'
            GROUP BY sender
            """, [.integer(c.id), .integer(old), .integer(seq), .text(user)]) { ($0.string(0) ?? "", $0.int64(1)) }
        var notify: [Notice] = []
        for (sender, latest) in senders where members.contains(sender) {
            let counts = try db.rows("""
                SELECT sum(delivered_seq >= ?1), sum(read_seq >= ?1), count(*) FROM members WHERE conversation = ?2 AND user != ?3
                """, [.integer(latest), .integer(c.id), .text(sender)]) { (Int($0.int64(0)), Int($0.int64(1)), Int($0.int64(2))) }.first!
            notify.append(Notice(user: sender, summary: (latest, counts.0, counts.1, counts.2)))
        }
        return Marked(receipt: receipt, notify: notify)
    }

    /// The `client_id` of a group change: unique, so it never meets a client's own ids.
    static func eventId() -> String { "group:" + UUID().uuidString }

    static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Queues `op` on the writer, timing it to its commit.
    func submit<T: Sendable>(_ op: @escaping @Sendable (Database) throws -> T,
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

/// Receipt ids: each receipt (a moved mark) takes the next, so they grow
/// with commit order and a device's receipt cursor says which it has. Kept
/// by the writer thread: the largest stored is read once, at the first
/// receipt after the store opens (a receipt's row keeps its latest id, so
/// that largest never goes back). An id taken by a write that a rerun or a
/// failed commit undid is skipped, never given twice.
final class ReceiptIds: Sendable {
    private let last = Mutex<Int64?>(nil)

    func next(_ db: Database) throws -> Int64 {
        try last.withLock { last in
            let id = try (last ?? db.rows("SELECT coalesce(max(id), 0) FROM receipts") { $0.int64(0) }.first ?? 0) + 1
            last = id
            return id
        }
    }
}
