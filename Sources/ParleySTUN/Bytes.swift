// Big-endian field access over raw bytes (RFC 8489 §5: network order).
// Every read assembles bytes so alignment never matters. ParleySTUN and
// ParleyRTP each keep a private copy so neither depends on the other.

extension UnsafeRawBufferPointer {
    @inline(__always) func u8(_ offset: Int) -> UInt8 { self[offset] }

    @inline(__always) func u16(_ offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    @inline(__always) func u24(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) << 16 | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2])
    }

    @inline(__always) func u32(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16
            | UInt32(self[offset + 2]) << 8 | UInt32(self[offset + 3])
    }

    @inline(__always) func u64(_ offset: Int) -> UInt64 {
        UInt64(u32(offset)) << 32 | UInt64(u32(offset + 4))
    }

    /// A sub-view sharing the same memory (no copy).
    @inline(__always) func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[range])
    }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func put8(_ v: UInt8, at offset: Int) { self[offset] = v }

    @inline(__always) func put16(_ v: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: v)
    }

    @inline(__always) func put24(_ v: UInt32, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 16)
        self[offset + 1] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 2] = UInt8(truncatingIfNeeded: v)
    }

    @inline(__always) func put32(_ v: UInt32, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 24)
        self[offset + 1] = UInt8(truncatingIfNeeded: v >> 16)
        self[offset + 2] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 3] = UInt8(truncatingIfNeeded: v)
    }

    @inline(__always) func put64(_ v: UInt64, at offset: Int) {
        put32(UInt32(truncatingIfNeeded: v >> 32), at: offset)
        put32(UInt32(truncatingIfNeeded: v), at: offset + 4)
    }

    @inline(__always) func putBytes<C: Collection>(_ bytes: C, at offset: Int) where C.Element == UInt8 {
        var i = offset
        for b in bytes {
            self[i] = b
            i += 1
        }
    }

    @inline(__always) func zero(_ range: Range<Int>) {
        for i in range { self[i] = 0 }
    }
}

/// Rounds `n` up to a multiple of 4 (STUN attributes are 32-bit aligned, RFC 8489 §14).
@inline(__always) func padded4(_ n: Int) -> Int { (n + 3) & ~3 }
