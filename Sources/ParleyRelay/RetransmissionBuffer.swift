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

    /// Forgets everything (e.g. after an SSRC restart).
    func clear() {
        sequences.update(repeating: -1, count: slots)
    }
}
