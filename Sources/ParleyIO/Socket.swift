import ParleyCore
import Glibc
import CLinux

/// Thin helpers over socket syscalls shared by the UDP and TCP types. All
/// go through ``syscall(_:_:)``; fds are non-blocking and close-on-exec.
enum SocketOps {
    static func socket(_ family: Int32, _ type: Int32) throws(SystemError) -> Int32 {
        try syscall("socket") { parley_socket_nonblock(family, type, 0) }
    }

    static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ fn: StaticString = "setsockopt") throws(SystemError) {
        var v = value
        try syscall(fn) { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    static func getInt(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32 {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, level, name, &v, &len) == 0 ? v : -1
    }

    /// Sets SO_RCVBUF/SO_SNDBUF to `bytes`: tries the *FORCE variant first
    /// (root / CAP_NET_ADMIN may exceed net.core.rmem_max), then the normal
    /// one (clamped by the kernel). Returns the size the kernel reports
    /// (which is twice the request, bookkeeping included).
    @discardableResult
    static func setBuffer(_ fd: Int32, receive: Bool, bytes: Int) -> Int {
        let force = receive ? SO_RCVBUFFORCE : SO_SNDBUFFORCE
        let plain = receive ? SO_RCVBUF : SO_SNDBUF
        if (try? setInt(fd, SOL_SOCKET, force, Int32(clamping: bytes))) == nil {
            _ = try? setInt(fd, SOL_SOCKET, plain, Int32(clamping: bytes))
        }
        return Int(getInt(fd, SOL_SOCKET, plain))
    }

    static func bind(_ fd: Int32, _ address: SocketAddress) throws(SystemError) {
        var storage = sockaddr_storage()
        let len = withUnsafeMutableBytes(of: &storage) { address.write(to: $0.baseAddress!) }
        _ = try withUnsafePointer(to: &storage) { p throws(SystemError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SystemError) in
                try syscall("bind") { Glibc.bind(fd, sa, len) }
            }
        }
    }

    static func localAddress(_ fd: Int32) throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { p throws(SystemError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SystemError) in
                try syscall("getsockname") { getsockname(fd, sa, &len) }
            }
        }
        guard let a = SocketAddress(storage, length: Int(len)) else { throw SystemError(errno: EAFNOSUPPORT, function: "getsockname") }
        return a
    }

    static func peerAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        return r == 0 ? SocketAddress(storage, length: Int(len)) : nil
    }

    /// A non-blocking socket of `type` bound to `address`, with the usual
    /// options. Closes the fd if anything fails.
    static func boundSocket(_ address: SocketAddress, type: Int32, reuseAddress: Bool, reusePort: Bool,
                            ipv6Only: Bool) throws(SystemError) -> Int32 {
        let fd = try socket(address.protocolFamily, type)
        do {
            if reuseAddress { try setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1) }
            if reusePort { try setInt(fd, SOL_SOCKET, parley_so_reuseport(), 1) }
            if address.family == .ipv6 { try setInt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, ipv6Only ? 1 : 0) }
            try bind(fd, address)
            return fd
        } catch {
            closeFD(fd)
            throw error
        }
    }
}
