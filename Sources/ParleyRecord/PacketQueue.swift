import Synchronization

/// The bounded hand-off from the packet path to the recorder thread: a ring
/// of fixed-size slots allocated once. Any thread may `push` (a lock, one
/// copy, no allocation, never a wait); only the recorder thread `drain`s.
/// Slots being drained are outside the producers' reach until `drain`
/// returns them, so the copy out happens without the lock.
final class PacketQueue: @unchecked Sendable {
    struct Slot {
        var recording: Int32 = 0
        var ssrc: UInt32 = 0
        var isRTCP = false
        var arrivalNanos: Int64 = 0
        var length: Int32 = 0
    }

    let capacity: Int
    /// A quarter of `capacity`: the push that brings the queue to this many
    /// packets wakes the consumer early (it otherwise drains on a timer).
    let wakeCount: Int
    /// The largest packet a slot holds (RTP over UDP on Ethernet fits in 1500).
    let slotSize: Int
    private let arena: UnsafeMutableRawPointer
    private let slots: UnsafeMutablePointer<Slot>
    private let state = Mutex<(head: Int, count: Int)>((0, 0))

    init(capacity: Int, slotSize: Int = 1500) {
        precondition(capacity > 0 && slotSize > 0)
        self.capacity = capacity
        wakeCount = max(1, capacity / 4)
        self.slotSize = slotSize
        arena = .allocate(byteCount: capacity * slotSize, alignment: 16)
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(), count: capacity)
    }

    deinit {
        arena.deallocate()
        slots.deinitialize(count: capacity)
        slots.deallocate()
    }

    /// Copies `bytes` into the next free slot; the packets queued with it,
    /// or nil when the queue is full or the packet larger than a slot.
    func push(recording: Int32, ssrc: UInt32, rtcp: Bool, arrivalNanos: Int64, bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count <= slotSize, let base = bytes.baseAddress else { return nil }
        return state.withLock { s in
            guard s.count < capacity else { return nil }
            let i = (s.head + s.count) % capacity
            (arena + i * slotSize).copyMemory(from: base, byteCount: bytes.count)
            slots[i] = Slot(recording: recording, ssrc: ssrc, isRTCP: rtcp, arrivalNanos: arrivalNanos, length: Int32(bytes.count))
            s.count += 1
            return s.count
        }
    }

    /// Hands the queued packets, oldest first, to `body` (at most `limit`
    /// of them); recorder thread only.
    func drain(limit: Int = .max, _ body: (Slot, UnsafeRawBufferPointer) -> Void) {
        let (head, queued) = state.withLock { ($0.head, $0.count) }
        let n = min(queued, limit)
        guard n > 0 else { return }
        for k in 0..<n {
            let i = (head + k) % capacity
            body(slots[i], UnsafeRawBufferPointer(start: arena + i * slotSize, count: Int(slots[i].length)))
        }
        state.withLock { s in
            s.head = (s.head + n) % capacity
            s.count -= n
        }
    }

    var isEmpty: Bool { state.withLock { $0.count == 0 } }

    /// Packets queued now.
    var count: Int { state.withLock { $0.count } }
}
