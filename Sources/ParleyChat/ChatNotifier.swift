import ParleyCore
import ParleyHTTP

/// What chat tells a notifier: a message reached a user with no connected
/// chat device (docs/protocol.md "Offline notifications").
public struct ChatNotification: Sendable, Equatable {
    /// High goes first when the notifier is slow: 1:1 messages are high, group messages normal.
    public enum Priority: Int, Sendable, Comparable {
        case normal = 0, high = 1
        public static func < (a: Priority, b: Priority) -> Bool { a.rawValue < b.rawValue }
        public var name: String { self == .high ? "high" : "normal" }
    }

    /// The offline recipient.
    public var user: String
    public var conversation: Int64
    public var sender: String
    /// A group message (else 1:1).
    public var group: Bool
    public var priority: Priority
    /// The message's text, only when the operator configured it (`chat-webhook-include-text`).
    public var text: String?
    /// Messages this notification stands for (more than 1 once collapsed).
    public var count = 1

    public init(user: String, conversation: Int64, sender: String, group: Bool, text: String? = nil) {
        self.user = user
        self.conversation = conversation
        self.sender = sender
        self.group = group
        self.priority = group ? .normal : .high
        self.text = text
    }
}

/// Told by `ChatService` when a stored message's recipient has no
/// connected chat device. Called on the signalling thread: an
/// implementation must return at once (queue, never wait) and bound what it
/// keeps. `WebhookNotifier` is the first implementation.
public protocol ChatNotifier: AnyObject, Sendable {
    func notify(_ notification: ChatNotification)
    /// Whether the message text may be handed over (else `text` stays nil).
    var includesText: Bool { get }
    /// Stops the notifier; what is queued is dropped.
    func close()
}

/// The pending notifications of a notifier: one entry per offline user,
/// collapsed (a new message for a user with an entry waiting adds to its
/// count), rate-limited per user (an entry is due no sooner than
/// `interval` after the user's previous notification went out), bounded
/// (`capacity` entries; more are dropped), and taken highest priority
/// first, then oldest. A failed attempt comes back with `retry`, due after
/// an exponential backoff. A value owned by one thread; times are
/// monotonic nanoseconds passed in, so it reads no clock.
public struct NotificationQueue: Sendable {
    public struct Entry: Sendable {
        /// Stays the same over retries, so a receiver can drop a repeat (`X-Parley-Delivery`).
        public var id: String
        public var notification: ChatNotification
        /// Attempts made so far.
        public var attempts = 0
        public var due: UInt64
        var order: UInt64
    }

    public enum Outcome: Equatable, Sendable { case queued, collapsed, dropped }

    public let capacity: Int
    public let intervalNanoseconds: UInt64
    public let backoffNanoseconds: UInt64
    public let maxBackoffNanoseconds: UInt64

    private var entries: [String: Entry] = [:]
    /// When each user's last notification went out; entries older than the interval are swept.
    private var lastSent: [String: UInt64] = [:]
    private var counter: UInt64 = 0

    public init(capacity: Int, intervalNanoseconds: UInt64, backoffNanoseconds: UInt64,
                maxBackoffNanoseconds: UInt64 = 300_000_000_000) {
        self.capacity = capacity
        self.intervalNanoseconds = intervalNanoseconds
        self.backoffNanoseconds = backoffNanoseconds
        self.maxBackoffNanoseconds = max(backoffNanoseconds, maxBackoffNanoseconds)
    }

    /// Entries waiting (new and to retry).
    public var count: Int { entries.count }

    /// Adds a message's notification: folded into the user's waiting entry if there is one.
    public mutating func add(_ n: ChatNotification, now: UInt64) -> Outcome {
        if var e = entries[n.user] {
            Self.merge(n, into: &e.notification)
            entries[n.user] = e
            return .collapsed
        }
        guard entries.count < capacity else { return .dropped }
        counter += 1
        var due = now
        if let last = lastSent[n.user] { due = max(now, last &+ intervalNanoseconds) }
        entries[n.user] = Entry(id: Self.deliveryID(), notification: n, due: due, order: counter)
        return .queued
    }

    /// Takes the entry to send now: the highest priority among those due, then the oldest; nil if none is due.
    public mutating func next(now: UInt64) -> Entry? {
        var best: Entry?
        for e in entries.values where e.due <= now {
            guard let b = best else { best = e; continue }
            let p = e.notification.priority, bp = b.notification.priority
            if p > bp || (p == bp && e.order < b.order) { best = e }
        }
        guard var e = best else { return nil }
        entries[e.notification.user] = nil
        e.attempts += 1
        if lastSent.count >= capacity { lastSent = lastSent.filter { now &- $0.value < intervalNanoseconds } }
        lastSent[e.notification.user] = now
        return e
    }

    /// When the next entry falls due (nil when empty).
    public var nextDue: UInt64? { entries.values.map(\.due).min() }

    /// Puts a failed attempt back, due after the backoff for its attempts so
    /// far; merged into a newer entry of the same user if one is waiting.
    public mutating func retry(_ failed: Entry, now: UInt64) -> Outcome {
        let due = now &+ backoff(afterAttempts: failed.attempts)
        let user = failed.notification.user
        if var e = entries[user] {
            var merged = failed.notification
            Self.merge(e.notification, into: &merged)
            e.notification = merged
            e.attempts = max(e.attempts, failed.attempts)
            e.due = max(e.due, due)
            entries[user] = e
            return .collapsed
        }
        guard entries.count < capacity else { return .dropped }
        var e = failed
        e.due = due
        entries[user] = e
        return .queued
    }

    /// The wait before attempt `attempts + 1`: the base, doubled per attempt made after the first, capped.
    public func backoff(afterAttempts attempts: Int) -> UInt64 {
        let shift = UInt64(max(0, min(attempts - 1, 30)))
        let (d, overflow) = backoffNanoseconds.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? maxBackoffNanoseconds : min(d, maxBackoffNanoseconds)
    }

    /// Drops everything waiting.
    public mutating func removeAll() { entries = [:] }

    /// `n` (newer) folded into `into`: counts add up, the higher priority and the newer message's details win.
    static func merge(_ n: ChatNotification, into old: inout ChatNotification) {
        let count = old.count + n.count, priority = max(old.priority, n.priority)
        old = n
        old.count = count
        old.priority = priority
    }

    static func deliveryID() -> String { Hex.encode(SecureRandom.bytes(12)) }
}
