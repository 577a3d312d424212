import ParleyCore

// The big-endian byte helpers (u16/u32/put32/padded4…) live in ParleyCore/Bytes.swift.

/// Runs a writer over a fresh zeroed array of `size` bytes (allocates; tests and tools).
func encodeToArray(size: Int, _ write: (UnsafeMutableRawBufferPointer) throws(RTPError) -> Int) throws(RTPError) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: size)
    let result: Result<Int, RTPError> = out.withUnsafeMutableBytes { b in
        Result { () throws(RTPError) -> Int in try write(b) }
    }
    let n = try result.get()
    precondition(n == size, "writer produced \(n) bytes, expected \(size)")
    return out
}
