import ParleyCore
import XCTest
import Glibc
import Synchronization
@testable import ParleyIO

/// Open descriptors of this process as "fd -> target" (readlink of
/// /proc/self/fd/N), minus the one opendir itself uses.
func openFDs() -> Set<String> {
    guard let d = opendir("/proc/self/fd") else { return [] }
    let own = dirfd(d)
    var result = Set<String>()
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard let fd = Int32(name), fd != own else { continue }
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink("/proc/self/fd/\(name)", &buf, buf.count - 1)
        let target = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        result.insert("\(fd) -> \(target)")
    }
    closedir(d)
    return result
}

/// Descriptors of the kinds the event loop, timers and sockets open
/// (epoll, eventfd, timerfd, signalfd, sockets) that are open now and were
/// not in `before`. Other descriptors (a pipe XCTest or another test's
/// child process opens meanwhile) are not this code's and are ignored, so
/// the check is about leaks, not about what else the process does.
func leakedFDs(since before: Set<String>) -> [String] {
    openFDs().subtracting(before)
        .filter { $0.contains("anon_inode:") || $0.contains("socket:") }
        .sorted()
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (20000 here).
func raiseFDLimit() {
    var rl = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    rl.rlim_cur = rl.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
}

/// The deterministic test pattern: byte i of stream `seed` is P[(i + seed) % 251].
enum Pattern {
    static let period = 251
    static let maxCount = 8 << 20
    /// P repeated enough that any (offset % 251) + 8 MiB fits; allocated once
    /// and never freed, so views into it stay valid.
    nonisolated(unsafe) static let storage: UnsafeRawBufferPointer = {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: period + maxCount, alignment: 16)
        for i in 0..<b.count { b[i] = UInt8(truncatingIfNeeded: (i % 251) &* 7 &+ 3) }
        return UnsafeRawBufferPointer(b)
    }()

    static func check(_ b: UnsafeRawBufferPointer, offset: Int, seed: Int) -> Bool {
        precondition(b.count <= maxCount)
        let start = (offset + seed) % period
        return memcmp(storage.baseAddress! + start, b.baseAddress!, b.count) == 0
    }

    static func slice(offset: Int, count: Int, seed: Int) -> UnsafeRawBufferPointer {
        precondition(count <= maxCount)
        let start = (offset + seed) % period
        return UnsafeRawBufferPointer(rebasing: storage[start..<(start + count)])
    }
}

/// Blocking plain client socket for tests (a peer not written with ParleyIO).
struct BlockingSocket {
    let fd: Int32
    init(connectTo a: SocketAddress, receiveBuffer: Int32? = nil) {
        fd = socket(a.protocolFamily, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        if var rb = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, 4) }
        // No Nagle: with tiny buffers, Nagle + delayed ACKs stall for seconds.
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
        let r = a.withSockAddr { Glibc.connect(fd, $0, $1) }
        precondition(r == 0, "connect: \(errno)")
    }
    func send(_ b: [UInt8]) {
        var off = 0
        b.withUnsafeBytes { p in
            while off < p.count {
                let n = Glibc.send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL))
                precondition(n > 0, "send: \(errno)")
                off += n
            }
        }
    }
    /// Reads until EOF.
    func readAll(_ each: (UnsafeRawBufferPointer) -> Void) {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            buf.withUnsafeBytes { each(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }
    /// Reads until EOF, checking the bytes against `Pattern` stream `seed`.
    func readAllChecking(seed: Int) -> (count: Int, intact: Bool) {
        var got = 0
        var ok = true
        readAll { b in
            if !Pattern.check(b, offset: got, seed: seed) { ok = false }
            got += b.count
        }
        return (got, ok)
    }
    func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }
    func close() { Glibc.close(fd) }
}

/// A thread running `body`, joined with `join()`.
final class TestThread: @unchecked Sendable {
    private var t = pthread_t()
    private let body: () -> Void
    init(_ body: @escaping () -> Void) {
        self.body = body
        let u = Unmanaged.passRetained(self)
        pthread_create(&t, nil, { arg in
            let me = Unmanaged<TestThread>.fromOpaque(arg!).takeRetainedValue()
            me.body()
            return nil
        }, u.toOpaque())
    }
    func join() { pthread_join(t, nil) }
}

/// A value shared between the test thread and loops.
final class Shared<T>: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T {
        get { lock.withLock { _ in v } }
        set { lock.withLock { _ in v = newValue } }
    }
    func update<R>(_ f: (inout T) -> R) -> R { lock.withLock { _ in f(&v) } }
}
