import ParleyCore
import ParleyStore
import Synchronization

/// The store's bounds that are not one conversation's: a recipient's
/// backlog over all its conversations, and media per user (docs/security.md "Chat").
extension ChatStore {
    /// Messages stored that `user` has not had yet, over all its conversations (groups included).
    static func backlog(_ db: Database, of user: String) throws -> Int64 {
        try db.rows("""
            SELECT coalesce(sum(\(lastSeq) - max(m.delivered_seq, m.joined_seq)), 0)
            FROM members m JOIN conversations c ON c.id = m.conversation WHERE m.user = ?
            """, [.text(user)]) { $0.int64(0) }.first ?? 0
    }

    /// Throws `userBacklogFull` when a recipient of a message to `c` (its
    /// members but `sender`) already has `limit` messages waiting over all
    /// its conversations. One statement for a group, however many members.
    static func checkBacklog(_ db: Database, _ c: Conversation, sender: String, limit: Int) throws {
        guard limit < Int.max else { return }
        let full: String?
        if c.isGroup {
            full = try db.rows("""
                SELECT m.user FROM members g JOIN members m ON m.user = g.user JOIN conversations c ON c.id = m.conversation
                WHERE g.conversation = ?1 AND g.user != ?2
                GROUP BY m.user HAVING sum(\(lastSeq) - max(m.delivered_seq, m.joined_seq)) >= ?3 LIMIT 1
                """, [.integer(c.id), .text(sender), .integer(Int64(limit))]) { $0.string(0) }.first ?? nil
        } else {
            let to = c.a == sender ? c.b! : c.a!
            full = try backlog(db, of: to) >= Int64(limit) ? to : nil
        }
        if let full { throw ChatRefusal.userBacklogFull(user: full, limit: limit) }
    }

}

/// Upper bounds of users' backlogs, kept by the writer thread so that a
/// message to users far below `chat-max-backlog` needs no sum over their
/// conversations (that sum, per send, cost as much as the rest of a send for
/// a user in 99 conversations). A bound is the exact backlog when last
/// summed plus every message stored for the user since; deliveries only
/// lower the real figure, so the bound never underestimates. Group events
/// (create, add, remove, leave) forget every bound. When a bound would reach
/// the limit, the exact sum decides, as before. At most `capacity` users are
/// kept; past that all are forgotten (the next send of each sums again).
final class BacklogBounds: Sendable {
    private let bounds = Mutex<[String: Int64]>([:])
    let capacity: Int

    init(capacity: Int = 65_536) { self.capacity = capacity }

    /// Throws `userBacklogFull` as `ChatStore.checkBacklog` does; sums only
    /// for recipients whose bound does not show them below `limit`.
    func check(_ db: Database, _ c: ChatStore.Conversation, members: [String], sender: String, limit: Int) throws {
        guard limit < Int.max else { return }
        let recipients = members.filter { $0 != sender }
        let known = bounds.withLock { b in recipients.allSatisfy { (b[$0] ?? Int64(limit)) + 1 < Int64(limit) } }
        if known { return }
        if !c.isGroup, let to = recipients.first {
            let exact = try ChatStore.backlog(db, of: to)
            if exact >= Int64(limit) { throw ChatRefusal.userBacklogFull(user: to, limit: limit) }
            bounds.withLock { b in
                if b.count >= capacity { b.removeAll(keepingCapacity: true) }
                b[to] = exact
            }
        } else {
            try ChatStore.checkBacklog(db, c, sender: sender, limit: limit)
        }
    }

    /// One more message stored for each of `users` (the sender too: an upper bound may overcount).
    func added(for users: [String]) {
        bounds.withLock { b in for u in users where b[u] != nil { b[u]! += 1 } }
    }

    func forgetAll() { bounds.withLock { $0.removeAll(keepingCapacity: true) } }
}

// MARK: Media per user, and deletion

extension ChatStore {
    /// Throws `mediaQuota` when `owner` does not own `id` yet and the media
    /// it owns already, with `size` more, would pass `quota` bytes.
    static func checkMediaQuota(_ db: Database, _ id: String, size: Int, owner: String, quota: Int) throws {
        guard quota < Int.max else { return }
        let owns = try db.rows("SELECT 1 FROM media_owners WHERE id = ? AND user = ?", [.text(id), .text(owner)]) { _ in true }.first ?? false
        guard !owns else { return }
        let used = try db.rows("SELECT coalesce(sum(m.size), 0) FROM media_owners o JOIN media m ON m.id = o.id WHERE o.user = ?",
                               [.text(owner)]) { $0.int64(0) }.first ?? 0
        guard used + Int64(size) > Int64(quota) else { return }
        let stored = try db.rows("SELECT 1 FROM media WHERE id = ?", [.text(id)]) { _ in true }.first ?? false
        throw ChatRefusal.mediaQuota(limit: quota, stored: stored)
    }

    /// Bytes of media `user` owns (uploaded and not deleted).
    public func mediaBytes(of user: String, completion: @escaping @Sendable (Result<Int, Error>) -> Void) throws {
        try submit({ db in
            Int(try db.rows("SELECT coalesce(sum(m.size), 0) FROM media_owners o JOIN media m ON m.id = o.id WHERE o.user = ?",
                            [.text(user)]) { $0.int64(0) }.first ?? 0)
        }, completion: completion)
    }

    /// `DELETE /media/{id}`: `owner` gives up media `id`. Nil when it does
    /// not own it (or it does not exist); else the media whose rows went
    /// because nobody owns them and no stored message carries them any
    /// more (this one, if so, and any other such): their files are the
    /// caller's to remove.
    public func deleteMedia(_ id: String, owner: String, completion: @escaping @Sendable (Result<[String]?, Error>) -> Void) throws {
        try submit({ db in
            guard try db.run("DELETE FROM media_owners WHERE id = ? AND user = ?", [.text(id), .text(owner)]) > 0 else { return nil }
            return try Self.dropOrphanedMedia(db)
        }, completion: completion)
    }

    /// The media nobody owns and no stored message carries (their messages
    /// deleted by retention since their uploader deleted them): rows
    /// deleted, ids returned for the caller to remove the files.
    public func sweepMedia(completion: @escaping @Sendable (Result<[String], Error>) -> Void) throws {
        try submit({ db in try Self.dropOrphanedMedia(db) }, completion: completion)
    }

    static func dropOrphanedMedia(_ db: Database) throws -> [String] {
        let ids = try db.rows("""
            SELECT id FROM media m WHERE NOT EXISTS (SELECT 1 FROM media_owners o WHERE o.id = m.id)
            AND NOT EXISTS (SELECT 1 FROM message_media mm JOIN messages msg ON msg.conversation = mm.conversation AND msg.seq = mm.seq
                            WHERE mm.media = m.id)
            """) { $0.string(0) ?? "" }
        for id in ids {
            try db.run("DELETE FROM message_media WHERE media = ?", [.text(id)])
            try db.run("DELETE FROM media WHERE id = ?", [.text(id)])
        }
        return ids
    }
}
