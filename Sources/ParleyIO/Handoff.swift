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
    @usableFromInline var items: [Item] = []
    @usableFromInline var told = false

    @inlinable public init() {}

    /// Adds `item`; true when the caller must now tell the consumer.
    @inlinable public mutating func add(_ item: Item) -> Bool {
        items.append(item)
        defer { told = true }
        return !told
    }

    /// Swaps what waits into `batch` (empty: its capacity is kept for the
    /// next batch); the next add tells the consumer again.
    @inlinable public mutating func take(into batch: inout [Item]) {
        swap(&items, &batch)
        told = false
    }

    /// Drops what waits (the consumer is gone).
    @inlinable public mutating func drop() {
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
/// A producer that is itself an event loop posts at the end of its current
/// iteration (``EventLoop/atIterationEnd(_:)``): what one wake-up of a
/// connection's loop reads for the signalling thread, or what one batch of
/// the signalling thread sends to a loop, is one hop.
///
/// Order: items are handled in the order added (per producer thread). A task
/// that must run after items added before it goes into the same inbox, or
/// calls ``run()`` first on the consumer's thread: a task posted directly may
/// overtake them (their post may wait for the producer's iteration end).
public final class Inbox<Item: Sendable>: Sendable {
    // Inlinable: generic code called across modules would look up its metadata on every call.
    @usableFromInline let waiting = Mutex<Handoff<Item>>(Handoff())
    @usableFromInline let post: @Sendable (@escaping @Sendable () -> Void) -> Bool
    @usableFromInline nonisolated(unsafe) let handle: ([Item]) -> Void

    /// `post` runs a task on the consumer's thread (false once that thread
    /// has stopped: what waits is dropped); `handle` gets each batch there.
    public init(post: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool, handle: @escaping ([Item]) -> Void) {
        self.post = post
        self.handle = handle
    }

    /// Any thread.
    @inlinable public func add(_ item: Item) {
        guard waiting.withLock({ $0.add(item) }) else { return }
        if let here = EventLoop.current { here.atIterationEnd { self.wake() } } else { wake() }
    }

    @usableFromInline func wake() {
        if !post({ self.run() }) { waiting.withLock { $0.drop() } }
    }

    /// On the consumer's thread: handles what waits now (also early, before
    /// something that must come after it; the posted task then finds less).
    @inlinable public func run() {
        var batch: [Item] = []
        waiting.withLock { $0.take(into: &batch) }
        if !batch.isEmpty { handle(batch) }
    }
}
