// Fixed scratch arrays for hot paths (send batches, rings): allocated once,
// initialized, freed by the owner's deinit; nothing allocates per packet.

extension UnsafeMutablePointer {
    /// `count` initialized copies of `value`. The caller deallocates.
    @inlinable
    public static func filled(_ count: Int, with value: Pointee) -> UnsafeMutablePointer {
        let p = allocate(capacity: count)
        p.initialize(repeating: value, count: count)
        return p
    }
}
