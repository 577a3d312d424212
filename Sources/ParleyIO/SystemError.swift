import Glibc
import CLinux

/// A failed system call: the `errno` it set and the name of the function.
///
/// Every raw syscall in ParleyIO goes through ``syscall(_:_:)`` (or
/// ``syscallMayBlock(_:_:)``), so every error that escapes this module carries
/// both. `EBADF` and `EFAULT` never become a `SystemError`: they mean ParleyIO
/// used a closed fd or a bad pointer, which is a bug, so they stop the process.
public struct SystemError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The `errno` value.
    public let errno: Int32
    /// The C function that failed, e.g. `"bind"`.
    public let function: String

    public init(errno: Int32, function: String) {
        self.errno = errno
        self.function = function
    }

    /// `strerror` text for ``errno``.
    public var message: String { String(cString: strerror(errno)) }

    public var description: String { "\(function): \(message) (errno \(errno))" }
}

/// Result of a syscall that may report "would block" (`EAGAIN`/`EWOULDBLOCK`)
/// on a non-blocking descriptor. Would-block is not an error: the caller waits
/// for readiness and tries again.
public enum IOResult<T> {
    case processed(T)
    case wouldBlock
}

@inline(__always)
private func checkPrecondition(_ err: Int32, _ function: StaticString) {
    // EBADF/EFAULT: a closed fd or bad pointer reached the kernel. That is a
    // bug in ParleyIO or its caller, never a runtime condition to handle.
    precondition(err != EBADF && err != EFAULT,
                 "\(function) failed with \(err == EBADF ? "EBADF" : "EFAULT"): programming error")
}

/// Runs a syscall that returns -1 and sets `errno` on failure: retries on
/// `EINTR`, throws ``SystemError`` otherwise. Use for calls where would-block
/// cannot happen (socket, bind, setsockopt, epoll_ctl, ...).
@inline(__always) @discardableResult
public func syscall<T: FixedWidthInteger>(_ function: StaticString, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let err = Glibc.errno
        if err == EINTR { continue }
        checkPrecondition(err, function)
        throw SystemError(errno: err, function: "\(function)")
    }
}

/// Runs a syscall on a non-blocking descriptor: retries on `EINTR`, returns
/// `.wouldBlock` for `EAGAIN`/`EWOULDBLOCK` (and `EINPROGRESS` is *not* mapped:
/// connect handles it itself), throws ``SystemError`` otherwise.
@inline(__always)
public func syscallMayBlock<T: FixedWidthInteger>(_ function: StaticString, _ body: () -> T) throws(SystemError) -> IOResult<T> {
    while true {
        let r = body()
        if r >= 0 { return .processed(r) }
        let err = Glibc.errno
        if err == EINTR { continue }
        if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
        checkPrecondition(err, function)
        throw SystemError(errno: err, function: "\(function)")
    }
}

/// Closes a descriptor we own. `close` is not retried on EINTR (Linux always
/// releases the fd); EBADF means a double close, a bug.
@inline(__always)
func closeFD(_ fd: Int32) {
    let r = Glibc.close(fd)
    if r < 0 { checkPrecondition(Glibc.errno, "close") }
}
