import Glibc

/// An IPv4 or IPv6 socket address (IP + port, and the scope id for link-local v6).
///
/// A flat value type: 40 bytes of plain integers, no references. Hashing and
/// `==` compare a few words and never allocate, so the relay can use it as a
/// dictionary key per packet (source address → participant). Converting from
/// and to `sockaddr` copies the bytes, nothing more.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// Address family.
    public enum Family: UInt8, Sendable { case ipv4 = 4, ipv6 = 6 }

    /// The address family.
    public let family: Family
    /// The port, host byte order.
    public let port: UInt16
    // The address bytes exactly as in sin_addr / sin6_addr (network order),
    // loaded as two words. IPv4 uses the low 32 bits of `low` and high = 0.
    @usableFromInline let high: UInt64
    @usableFromInline let low: UInt64
    /// IPv6 scope id (interface index for link-local addresses); 0 for IPv4.
    public let scopeID: UInt32

    // MARK: Construction

    /// An IPv4 address from the 4 address bytes in network order (`sin_addr.s_addr`).
    public init(ipv4NetworkOrder addr: UInt32, port: UInt16) {
        family = .ipv4; self.port = port; high = 0; low = UInt64(addr); scopeID = 0
    }

    /// An IPv6 address from `in6_addr`.
    public init(ipv6 addr: in6_addr, port: UInt16, scopeID: UInt32 = 0) {
        var a = addr
        let (h, l) = withUnsafeBytes(of: &a) { raw in
            (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        family = .ipv6; self.port = port; high = h; low = l; self.scopeID = scopeID
    }

    /// Parses a numeric IP (`"127.0.0.1"`, `"::1"`, `"fe80::1%2"` is not supported)
    /// plus a port. `"localhost"` means 127.0.0.1. Returns nil for anything else.
    public init?(ip: String, port: UInt16) {
        if ip == "localhost" { self.init(ipv4NetworkOrder: in_addr_t(0x7f00_0001).bigEndian, port: port); return }
        var a4 = in_addr()
        if inet_pton(AF_INET, ip, &a4) == 1 {
            self.init(ipv4NetworkOrder: a4.s_addr, port: port); return
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, ip, &a6) == 1 {
            self.init(ipv6: a6, port: port); return
        }
        return nil
    }

    /// Parses `"host:port"` (IPv4 or `localhost`) or `"[v6]:port"`. Also
    /// accepts a bare IPv6 address followed by `:port` only in brackets.
    /// Returns nil for malformed input or a port outside 0...65535.
    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil } // v6 needs brackets
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let p = Int(portText), p <= 65535 else { return nil }
        self.init(ip: String(host), port: UInt16(p))
    }

    /// Reads a kernel-filled `sockaddr` (`AF_INET` or `AF_INET6`). Returns nil
    /// for other families or a too-short length. No allocation.
    @inlinable
    public init?(_ sa: UnsafeRawPointer, length: Int) {
        guard length >= MemoryLayout<sa_family_t>.size else { return nil }
        let fam = sa.loadUnaligned(as: sa_family_t.self)
        if fam == sa_family_t(AF_INET), length >= MemoryLayout<sockaddr_in>.size {
            let sin = sa.loadUnaligned(as: sockaddr_in.self)
            self.init(ipv4NetworkOrder: sin.sin_addr.s_addr, port: UInt16(bigEndian: sin.sin_port))
        } else if fam == sa_family_t(AF_INET6), length >= MemoryLayout<sockaddr_in6>.size {
            let sin6 = sa.loadUnaligned(as: sockaddr_in6.self)
            self.init(ipv6: sin6.sin6_addr, port: UInt16(bigEndian: sin6.sin6_port), scopeID: sin6.sin6_scope_id)
        } else {
            return nil
        }
    }

    /// Reads a `sockaddr_storage`.
    public init?(_ storage: sockaddr_storage, length: Int = MemoryLayout<sockaddr_storage>.size) {
        var s = storage
        guard let a = withUnsafeBytes(of: &s, { SocketAddress($0.baseAddress!, length: min(length, $0.count)) }) else { return nil }
        self = a
    }

    /// `0.0.0.0:port`.
    public static func ipv4Any(port: UInt16) -> SocketAddress { SocketAddress(ipv4NetworkOrder: 0, port: port) }
    /// `127.0.0.1:port`.
    public static func ipv4Loopback(port: UInt16) -> SocketAddress {
        SocketAddress(ipv4NetworkOrder: UInt32(0x7f00_0001).bigEndian, port: port)
    }
    /// `[::]:port`.
    public static func ipv6Any(port: UInt16) -> SocketAddress { SocketAddress(ipv6: in6addr_any, port: port) }
    /// `[::1]:port`.
    public static func ipv6Loopback(port: UInt16) -> SocketAddress { SocketAddress(ipv6: in6addr_loopback, port: port) }

    // MARK: Access

    /// `AF_INET` or `AF_INET6`.
    public var protocolFamily: Int32 { family == .ipv4 ? AF_INET : AF_INET6 }

    /// The same address with another port.
    public func withPort(_ p: UInt16) -> SocketAddress {
        SocketAddress(family: family, port: p, high: high, low: low, scopeID: scopeID)
    }

    @usableFromInline init(family: Family, port: UInt16, high: UInt64, low: UInt64, scopeID: UInt32) {
        self.family = family; self.port = port; self.high = high; self.low = low; self.scopeID = scopeID
    }

    /// The IPv4 address bytes in network order; nil for IPv6.
    public var ipv4NetworkOrder: UInt32? { family == .ipv4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// The raw address bytes: 4 for IPv4, 16 for IPv6 (network order).
    public var addressBytes: [UInt8] {
        var h = high, l = low
        switch family {
        case .ipv4: return withUnsafeBytes(of: UInt32(truncatingIfNeeded: l)) { Array($0) }
        case .ipv6: return withUnsafeBytes(of: &h) { Array($0) } + withUnsafeBytes(of: &l) { Array($0) }
        }
    }

    /// A 64-bit key for grouping by destination: equal addresses have equal
    /// keys; for IPv4 the key is exact (address and port), for IPv6 a hash
    /// (compare the addresses when keys match).
    @inlinable
    public var groupingKey: UInt64 {
        switch family {
        case .ipv4: return low | UInt64(port) << 32
        case .ipv6:
            return (high &* 0x9E37_79B9_7F4A_7C15) ^ low ^ (UInt64(port) << 48) ^ (UInt64(scopeID) << 17) ^ 1 << 63
        }
    }

    /// Writes this address as a `sockaddr_in`/`sockaddr_in6` into `storage`
    /// and returns its length. No allocation.
    @inlinable
    public func write(to storage: UnsafeMutableRawPointer) -> socklen_t {
        switch family {
        case .ipv4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = UInt32(truncatingIfNeeded: low)
            storage.storeBytes(of: sin, as: sockaddr_in.self)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case .ipv6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_scope_id = scopeID
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                raw.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
            }
            storage.storeBytes(of: sin6, as: sockaddr_in6.self)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    /// Calls `body` with a `sockaddr` pointer and length for this address.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var storage = sockaddr_storage()
        return try withUnsafeMutableBytes(of: &storage) { raw in
            let len = write(to: raw.baseAddress!)
            return try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), len)
        }
    }

    /// The numeric IP without port: `"127.0.0.1"`, `"::1"`.
    /// 127.0.0.0/8, ::1, or an IPv4-mapped loopback address.
    public var isLoopback: Bool {
        let b = addressBytes
        if family == .ipv4 { return b[0] == 127 }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }
        return b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff && b[12] == 127
    }

    public var ipString: String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        var h = high, l = low
        switch family {
        case .ipv4:
            var a = in_addr(s_addr: UInt32(truncatingIfNeeded: l))
            inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
        case .ipv6:
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) { raw in
                raw.storeBytes(of: h, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: l, toByteOffset: 8, as: UInt64.self)
            }
            _ = withUnsafeMutablePointer(to: &h) { _ in inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count)) }
        }
        return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `"1.2.3.4:5000"` or `"[::1]:5000"`; parses back with ``init(_:)``.
    public var description: String {
        family == .ipv4 ? "\(ipString):\(port)" : "[\(ipString)]:\(port)"
    }
}
