import ParleyCore

/// The last packets of one track, kept so a subscriber's NACK can be
/// answered without asking the publisher (RFC 4585 §6.2.1).
///
/// A fixed ring indexed by sequence number (`seq & (slots - 1)`): storing is
/// one copy into a preallocated slot, lookup checks the slot still holds that
/// exact sequence number and is young enough. Nothing allocates after init.
/// Loop only.
final class RetransmissionBuffer {
    let slots: Int
    let slotSize: Int
    private let mask: Int
    private let storage: UnsafeMutableRawPointer
    /// Per slot: the full 16-bit sequence number stored, or -1 when empty.
    private let sequences: UnsafeMutablePointer<Int32>
    private let lengths: UnsafeMutablePointer<Int>
    /// Per slot: arrival time in monotonic milliseconds.
    private let arrivals: UnsafeMutablePointer<UInt64>
    /// Bytes of every packet stored so far: what each subscriber was
    /// forwarded (its `RetransmissionBudget` is earned from this).
    private(set) var storedBytes = 0
    /// Bytes the slots hold now.
    private(set) var heldBytes = 0

    /// - Parameters:
    ///   - slots: rounded up to a power of two.
    ///   - slotSize: longest packet kept; longer ones are not stored.
    init(slots: Int, slotSize: Int = 1500) {
        var n = 1
        while n < max(slots, 1) { n <<= 1 }
        self.slots = n
        self.slotSize = slotSize
        mask = n - 1
        storage = .allocate(byteCount: n * slotSize, alignment: 16)
        sequences = .filled(n, with: -1)
        lengths = .filled(n, with: 0)
        arrivals = .filled(n, with: 0)
    }

    deinit {
        storage.deallocate(); sequences.deallocate(); lengths.deallocate(); arrivals.deallocate()
    }

    /// Keeps a copy of `packet` (sequence number `seq`, arrived at `nowMs`).
    @inline(__always)
    func store(_ packet: UnsafeRawBufferPointer, sequence seq: UInt16, nowMs: UInt64) {
        guard packet.count <= slotSize, let base = packet.baseAddress else { return }
        let i = Int(seq) & mask
        (storage + i * slotSize).copyMemory(from: base, byteCount: packet.count)
        sequences[i] = Int32(seq)
        heldBytes += packet.count - lengths[i]
        storedBytes += packet.count
        lengths[i] = packet.count
        arrivals[i] = nowMs
    }

    /// The stored packet with sequence number `seq`, if still held and not
    /// older than `maxAgeMs`. The view is valid until the next `store`.
    func packet(sequence seq: UInt16, nowMs: UInt64, maxAgeMs: UInt64) -> UnsafeRawBufferPointer? {
        let i = Int(seq) & mask
        guard sequences[i] == Int32(seq), nowMs &- arrivals[i] <= maxAgeMs else { return nil }
        return UnsafeRawBufferPointer(start: storage + i * slotSize, count: lengths[i])
    }
}

/// What one subscriber may still be resent of one track, so that a NACK
/// cannot make the relay an amplifier (one NACK of 290 FCI entries once
/// asked for 4,930 packets). Checked for every packet a NACK asks for:
///
/// - a packet is resent to this subscriber at most once per resend interval
///   (about a round trip: a repeat before the answer could have arrived, or
///   the same sequence number twice in one NACK, is a `duplicate`);
/// - the bytes resent never exceed `percent` % of the bytes the track
///   forwarded to the subscriber since it subscribed, and no more than
///   `percent` % of what the ring holds is banked, so a quiet subscriber
///   cannot save up for a burst (`overBudget`).
///
/// Preallocated when the subscription starts; a NACK allocates nothing.
/// Loop only.
final class RetransmissionBudget {
    enum Verdict: Equatable { case resend, duplicate, overBudget }

    private let mask: Int
    /// Per ring slot: monotonic ms (low 32 bits, 0 = never) of the last resend to this subscriber.
    private let resentAt: UnsafeMutablePointer<UInt32>
    /// Bytes that may still be resent.
    private var credit = 0
    /// The ring's `storedBytes` when credit was last earned.
    private var earnedUpTo: Int

    /// A budget for packets from `ring` (nil: a track without one), earning from now on.
    init(ring: RetransmissionBuffer?) {
        let slots = ring?.slots ?? 1
        mask = slots - 1
        resentAt = .filled(slots, with: 0)
        earnedUpTo = ring?.storedBytes ?? 0
    }

    deinit { resentAt.deallocate() }

    /// Credits `percent` % of what `ring` stored (and so forwarded) since the last call.
    func refill(from ring: RetransmissionBuffer, percent: Int) {
        let earned = (ring.storedBytes - earnedUpTo) * percent / 100
        earnedUpTo = ring.storedBytes
        credit = min(credit + earned, ring.heldBytes * percent / 100)
    }

    /// Whether packet `seq` of `bytes` may be resent now; if so it is charged.
    /// A packet goes at most once per `nowMs` even with a zero interval.
    func admit(sequence seq: UInt16, bytes: Int, nowMs: UInt64, intervalMs: UInt64) -> Verdict {
        let i = Int(seq) & mask
        let now = max(UInt32(truncatingIfNeeded: nowMs), 1) // 0 means "never resent"
        let last = resentAt[i]
        if last != 0, UInt64(now &- last) < max(intervalMs, 1) { return .duplicate }
        guard bytes <= credit else { return .overBudget }
        credit -= bytes
        resentAt[i] = now
        return .resend
    }
}
