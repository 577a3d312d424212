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

/// A blocking TCP socket connected to `ip`:`port` (IPv4 or IPv6 text), or
/// nil: for RFC 4571-framed media in tests (`sendFrame`, `receiveFrame`).
public func connectTCP(ip: String, port: UInt16) -> Int32? {
    let v6 = ip.contains(":")
    let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var ok = false
    if v6 {
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_port = port.bigEndian
        ok = inet_pton(AF_INET6, ip, &a.sin6_addr) == 1 && withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0 }
        }
    } else {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        ok = inet_pton(AF_INET, ip, &a.sin_addr) == 1 && withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
    guard ok else { close(fd); return nil }
    return fd
}

/// Writes `bytes` behind their 2-byte big-endian length (RFC 4571) on the blocking stream socket `fd`.
public func sendFrame(_ fd: Int32, _ bytes: [UInt8]) {
    let frame = [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
    var off = 0
    while off < frame.count {
        let n = frame.withUnsafeBytes { send(fd, $0.baseAddress! + off, frame.count - off, Int32(MSG_NOSIGNAL)) }
        precondition(n > 0, "send failed: \(errno)")
        off += n
    }
}

/// The next RFC 4571 frame on the stream socket `fd`, or nil on EOF or after
/// `timeout` seconds without a byte (a hang guard, not a timing assertion).
public func receiveFrame(_ fd: Int32, timeout: Double = 10) -> [UInt8]? {
    func exactly(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var have = 0
        while have < count {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return nil }
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + have, count - have, 0) }
            guard n > 0 else { return nil }
            have += n
        }
        return out
    }
    guard let h = exactly(2) else { return nil }
    let length = Int(h[0]) << 8 | Int(h[1])
    return length == 0 ? [] : exactly(length)
}
