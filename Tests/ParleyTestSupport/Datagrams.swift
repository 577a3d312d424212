#if canImport(Glibc)
import Glibc
#endif

/// The next datagram on the blocking UDP socket `fd`, or nil after `timeout`
/// seconds (a hang guard, not a timing assertion: callers wait for something
/// that must arrive, or pass 0 to drain what is queued). Reads up to 2048 bytes.
public func receiveDatagram(_ fd: Int32, timeout: Double = 10) -> [UInt8]? {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return nil }
    var buf = [UInt8](repeating: 0, count: 2048)
    let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return n >= 0 ? Array(buf[0..<n]) : nil
}
