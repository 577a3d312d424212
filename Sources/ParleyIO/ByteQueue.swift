/// A FIFO of bytes in one contiguous buffer, used as a connection's write
/// queue. Appends copy; the buffer is compacted or grown as needed and its
/// capacity kept, so a connection in steady state does not allocate.
struct ByteQueue {
    private(set) var storage: UnsafeMutableRawPointer?
    private(set) var capacity = 0
    private var head = 0
    private var tail = 0

    var count: Int { tail - head }
    var isEmpty: Bool { tail == head }

    /// The queued bytes (valid until the next mutation).
    var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.map { UnsafeRawPointer($0 + head) }, count: tail - head)
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (storage! + tail).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        tail += bytes.count
    }

    /// Makes room for `n` more bytes at the tail.
    mutating func reserve(_ n: Int) {
        if tail + n <= capacity { return }
        let used = tail - head
        if used + n <= capacity && head > 0 {
            storage!.copyMemory(from: storage! + head, byteCount: used)
        } else {
            var newCap = max(capacity * 2, 4096)
            while newCap < used + n { newCap *= 2 }
            let s = UnsafeMutableRawPointer.allocate(byteCount: newCap, alignment: 16)
            if used > 0 { s.copyMemory(from: storage! + head, byteCount: used) }
            storage?.deallocate()
            storage = s
            capacity = newCap
        }
        head = 0
        tail = used
    }

    /// Free space at the tail after `reserve`; caller writes then calls `commit`.
    var writableTail: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage! + tail, count: capacity - tail)
    }

    mutating func commit(_ n: Int) { tail += n }

    mutating func consume(_ n: Int) {
        head += n
        if head == tail { head = 0; tail = 0 }
    }

    /// Frees the buffer.
    mutating func release() {
        storage?.deallocate()
        storage = nil
        capacity = 0; head = 0; tail = 0
    }
}
