import Foundation

/// Writes all of `bytes` to `fd`, retrying on EINTR and short writes; the
/// errno of a failed write, or nil (EIO for a write that wrote nothing).
/// The one such loop: recordings, uploads, the logger, bench output.
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32? {
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 { if errno == EINTR { continue }; return errno }
        if n == 0 { return EIO }
        done += n
    }
    return nil
}

/// `writeAll` of an array's (or a slice's) bytes.
public func writeAll<C: ContiguousBytes>(_ fd: Int32, _ bytes: C) -> Int32? {
    bytes.withUnsafeBytes { writeAll(fd, $0) }
}
