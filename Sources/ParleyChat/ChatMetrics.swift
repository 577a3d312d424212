import ParleyCore

/// Chat's counters (`/metrics`), built from a registry. A class: a store
/// operation's closure captures it, and copying a struct of 20 counters
/// cost 20 retains and releases per message.
public final class ChatMetrics: Sendable {
    /// Messages stored and acknowledged `sent`.
    public let messages: Counter
    /// Resends of a known `clientId` (answered with the first ack, nothing stored).
    public let duplicates: Counter
    /// `chat.message` events sent to devices, as they happened (`live`) or from the store (`sync`).
    public let deliveredLive: Counter
    public let deliveredSync: Counter
    /// Receipts recorded, by status.
    public let receiptsDelivered: Counter
    public let receiptsRead: Counter
    /// Requests refused, by reason.
    public let refusedTooLarge: Counter
    public let refusedRateLimited: Counter
    public let refusedBusy: Counter
    public let refusedNotMember: Counter
    public let refusedTooManyDevices: Counter
    public let refusedGroupFull: Counter
    public let refusedBacklogFull: Counter
    /// `chat.presence` and `chat.typing` events sent to devices.
    public let presenceEvents: Counter
    public let typingEvents: Counter
    /// Messages deleted by retention.
    public let pruned: Counter
    /// Syncs run (on connect and on `chat.sync`).
    public let syncs: Counter
    /// From a store operation's submit to its commit.
    public let commitSeconds: Histogram
    /// Operations waiting for the store's writer thread.
    public let writerQueue: Gauge
    /// Batches the writer rolled back and ran again, an operation in them having failed after changing rows.
    public let writerReruns: Counter

    public init(registry: MetricsRegistry) {
        messages = registry.counter("parley_chat_messages_total", help: "Chat messages stored and acknowledged sent")
        duplicates = registry.counter("parley_chat_duplicates_total", help: "chat.send resends of a known clientId (nothing stored)")
        let delivered = "parley_chat_delivered_total", dHelp = "chat.message events sent to devices"
        deliveredLive = registry.counter(delivered, help: dHelp, labels: [("path", "live")])
        deliveredSync = registry.counter(delivered, help: dHelp, labels: [("path", "sync")])
        let receipts = "parley_chat_receipts_total", rHelp = "Delivered and read receipts recorded"
        receiptsDelivered = registry.counter(receipts, help: rHelp, labels: [("status", "delivered")])
        receiptsRead = registry.counter(receipts, help: rHelp, labels: [("status", "read")])
        let refused = "parley_chat_refused_total", fHelp = "Chat requests refused, by error code"
        refusedTooLarge = registry.counter(refused, help: fHelp, labels: [("reason", "too_large")])
        refusedRateLimited = registry.counter(refused, help: fHelp, labels: [("reason", "rate_limited")])
        refusedBusy = registry.counter(refused, help: fHelp, labels: [("reason", "busy")])
        refusedNotMember = registry.counter(refused, help: fHelp, labels: [("reason", "not_member")])
        refusedTooManyDevices = registry.counter(refused, help: fHelp, labels: [("reason", "too_many_devices")])
        refusedGroupFull = registry.counter(refused, help: fHelp, labels: [("reason", "group_full")])
        refusedBacklogFull = registry.counter(refused, help: fHelp, labels: [("reason", "backlog_full")])
        presenceEvents = registry.counter("parley_chat_presence_events_total", help: "chat.presence events sent to contacts' devices")
        typingEvents = registry.counter("parley_chat_typing_events_total", help: "chat.typing events passed on to members' devices")
        pruned = registry.counter("parley_chat_pruned_total", help: "Chat messages deleted by retention (chat-retention)")
        syncs = registry.counter("parley_chat_syncs_total", help: "Chat syncs run (on connect and on chat.sync)")
        commitSeconds = registry.histogram("parley_chat_commit_seconds",
                                           help: "Chat store operations from submit to group commit",
                                           bounds: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1])
        writerQueue = registry.gauge("parley_chat_writer_queue", help: "Chat store operations waiting for the writer thread")
        writerReruns = registry.counter("parley_chat_writer_reruns_total",
                                        help: "Chat store batches rolled back and run again with a savepoint per operation (one failed after changing rows)")
    }

    public static let shared = ChatMetrics(registry: .shared)
}
