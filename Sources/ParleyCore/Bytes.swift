// Big-endian field access over raw bytes, shared by every wire codec
// (RTP/RTCP, STUN, the relay's packet peeks). Network order is big-endian
// (RFC 3550 §4, RFC 8489 §5); every read assembles bytes, so alignment never
// matters. All helpers are @inlinable and @inline(__always) so the packet path
// compiles to the same code as a module-private copy would: no call, no
// allocation. Offsets are not bounds-checked beyond the buffer's own
// subscript (debug builds trap; callers check lengths first).

extension UnsafeRawBufferPointer {
    /// The byte at `offset`.
    @inlinable @inline(__always)
    public func u8(_ offset: Int) -> UInt8 { self[offset] }

    /// The big-endian 16-bit value at `offset..<offset+2`.
    @inlinable @inline(__always)
    public func u16(_ offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    /// The big-endian 24-bit value at `offset..<offset+3` (in the low bits).
    @inlinable @inline(__always)
    public func u24(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) << 16 | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2])
    }

    /// The big-endian 32-bit value at `offset..<offset+4`.
    @inlinable @inline(__always)
    public func u32(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16
            | UInt32(self[offset + 2]) << 8 | UInt32(self[offset + 3])
    }

    /// The big-endian 64-bit value at `offset..<offset+8`.
    @inlinable @inline(__always)
    public func u64(_ offset: Int) -> UInt64 {
        UInt64(u32(offset)) << 32 | UInt64(u32(offset + 4))
    }

    /// A sub-view sharing the same memory (no copy).
    @inlinable @inline(__always)
    public func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[range])
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Stores the byte `v` at `offset`.
    @inlinable @inline(__always)
    public func put8(_ v: UInt8, at offset: Int) { self[offset] = v }

    /// Stores `v` big-endian at `offset..<offset+2`.
    @inlinable @inline(__always)
    public func put16(_ v: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: v)
    }

    /// Stores the low 24 bits of `v` big-endian at `offset..<offset+3`.
    @inlinable @inline(__always)
    public func put24(_ v: UInt32, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 16)
        self[offset + 1] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 2] = UInt8(truncatingIfNeeded: v)
    }

    /// Stores `v` big-endian at `offset..<offset+4`.
    @inlinable @inline(__always)
    public func put32(_ v: UInt32, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 24)
        self[offset + 1] = UInt8(truncatingIfNeeded: v >> 16)
        self[offset + 2] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 3] = UInt8(truncatingIfNeeded: v)
    }

    /// Stores `v` big-endian at `offset..<offset+8`.
    @inlinable @inline(__always)
    public func put64(_ v: UInt64, at offset: Int) {
        put32(UInt32(truncatingIfNeeded: v >> 32), at: offset)
        put32(UInt32(truncatingIfNeeded: v), at: offset + 4)
    }

    /// Copies `bytes` in order starting at `offset`.
    @inlinable @inline(__always)
    public func putBytes<C: Collection>(_ bytes: C, at offset: Int) where C.Element == UInt8 {
        var i = offset
        for b in bytes {
            self[i] = b
            i += 1
        }
    }

    /// Sets every byte in `range` to zero.
    @inlinable @inline(__always)
    public func zero(_ range: Range<Int>) {
        for i in range { self[i] = 0 }
    }
}

/// Rounds `n` up to a multiple of 4 (RTP/RTCP/STUN 32-bit word alignment,
/// RFC 3550 §6.4.1, RFC 8489 §14).
@inlinable @inline(__always)
public func padded4(_ n: Int) -> Int { (n + 3) & ~3 }
