import Synchronization

/// Items for one consumer thread from any thread, and whether the consumer
/// has been told of them: the one way work is handed between threads here.
///
/// Producers add under their owner's lock. The add that finds the consumer
/// not yet told must tell it, once, after the lock (``EventLoop/execute(_:)``
/// writes its eventfd; an ``Inbox`` posts one `execute`). The consumer takes
/// everything that gathered meanwhile, and the next add tells it again. A
/// burst costs the consumer one wake-up and one lock, not one per item.
public struct Handoff<Item> {
    private var items: [Item] = []
    private var told = false

    public init() {}

    /// Adds `item`; true when the caller must now tell the consumer.
    public mutating func add(_ item: Item) -> Bool {
        items.append(item)
        defer { told = true }
        return !told
    }

    /// Swaps what waits into `batch` (empty: its capacity is kept for the
    /// next batch); the next add tells the consumer again.
    public mutating func take(into batch: inout [Item]) {
        swap(&items, &batch)
        told = false
    }

    /// Drops what waits (the consumer is gone).
    public mutating func drop() {
        items = []
        told = false
    }
}

/// Items handed to one thread in batches through an `execute`-style entry
/// (``EventLoop/execute(_:)``, or a seam over it): the first item added while
/// none waits posts one task, which handles every item added before it runs.
/// So a store batch's completions, or the frames the signalling thread sends
/// to one loop's connections, cost that thread one hop.
///
/// Order: items are handled in the order added (per producer thread). An
/// item added before the same thread posts another task to the same loop is
/// handled before that task runs: either its own task is queued ahead of it,
/// or a task already queued (or running) takes it.
public final class Inbox<Item: Sendable>: Sendable {
    private let waiting = Mutex<Handoff<Item>>(Handoff())
    private let post: @Sendable (@escaping @Sendable () -> Void) -> Bool
    nonisolated(unsafe) private let handle: ([Item]) -> Void

    /// `post` runs a task on the consumer's thread (false once that thread
    /// has stopped: what waits is dropped); `handle` gets each batch there.
    public init(post: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool, handle: @escaping ([Item]) -> Void) {
        self.post = post
        self.handle = handle
    }

    /// Any thread.
    public func add(_ item: Item) {
        guard waiting.withLock({ $0.add(item) }) else { return }
        if !post({ self.run() }) { waiting.withLock { $0.drop() } }
    }

    /// On the consumer's thread: handles what waits now (also early, before
    /// something that must come after it; the posted task then finds less).
    public func run() {
        var batch: [Item] = []
        waiting.withLock { $0.take(into: &batch) }
        if !batch.isEmpty { handle(batch) }
    }
}
