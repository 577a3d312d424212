#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ParleyCore

// MAPPED-ADDRESS, RFC 8489 §14.1 (XOR-MAPPED-ADDRESS, §14.2, is the same
// layout with X-Port = port ^ (cookie >> 16) and X-Address = address ^
// cookie (IPv4) or address ^ (cookie ‖ transaction ID) (IPv6)):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |0 0 0 0 0 0 0 0|    Family     |           Port                |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                 Address (32 bits or 128 bits)                 |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// A transport address as STUN carries it: family, up to 16 address bytes
/// (IPv4 uses the first 4) and port. A plain value so this module needs no
/// socket types; the relay converts to and from ParleyIO's SocketAddress.
public struct STUNAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: UInt8, Sendable {
        case ipv4 = 0x01
        case ipv6 = 0x02

        /// Address bytes on the wire.
        public var addressSize: Int { self == .ipv4 ? 4 : 16 }
    }

    public var family: Family
    public var port: UInt16
    /// Address bytes 0–7 and 8–15, big-endian (IPv4: the top 32 bits of `high`).
    public var high: UInt64
    public var low: UInt64

    /// IPv4 from a host-order value (0xC0000201 is 192.0.2.1).
    public init(ipv4: UInt32, port: UInt16) {
        family = .ipv4
        self.port = port
        high = UInt64(ipv4) << 32
        low = 0
    }

    /// IPv6 from its two 64-bit halves (host order of the big-endian bytes).
    public init(ipv6High: UInt64, low: UInt64, port: UInt16) {
        family = .ipv6
        self.port = port
        high = ipv6High
        self.low = low
    }

    /// From raw address bytes: 4 for IPv4, 16 for IPv6 (as in sockaddr).
    public init?(addressBytes b: UnsafeRawBufferPointer, port: UInt16) {
        switch b.count {
        case 4: self.init(ipv4: b.u32(0), port: port)
        case 16: self.init(ipv6High: b.u64(0), low: b.u64(8), port: port)
        default: return nil
        }
    }

    /// Parses a numeric IPv4 or IPv6 address string (inet_pton; no DNS).
    public init?(_ ip: String, port: UInt16) {
        var buf = (UInt64(0), UInt64(0))
        let ok4 = withUnsafeMutableBytes(of: &buf) { inet_pton(AF_INET, ip, $0.baseAddress) == 1 }
        if ok4 {
            let v = withUnsafeBytes(of: &buf) { $0.u32(0) }
            self.init(ipv4: v, port: port)
            return
        }
        let ok6 = withUnsafeMutableBytes(of: &buf) { inet_pton(AF_INET6, ip, $0.baseAddress) == 1 }
        guard ok6 else { return nil }
        let (h, l) = withUnsafeBytes(of: &buf) { ($0.u64(0), $0.u64(8)) }
        self.init(ipv6High: h, low: l, port: port)
    }

    /// IPv4 address as a host-order value (meaningful for .ipv4 only).
    public var ipv4: UInt32 { UInt32(truncatingIfNeeded: high >> 32) }

    /// Calls `body` with the 4 or 16 address bytes in network order.
    public func withAddressBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var tmp = (high.bigEndian, low.bigEndian)
        return try withUnsafeBytes(of: &tmp) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<family.addressSize])) }
    }

    /// "192.0.2.1:32853" or "[2001:db8::1]:32853" (allocates; for logs and tests).
    public var description: String {
        var out = [CChar](repeating: 0, count: 64)
        let af = family == .ipv4 ? AF_INET : AF_INET6
        withAddressBytes { b in _ = inet_ntop(af, b.baseAddress, &out, socklen_t(out.count)) }
        let ip = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return family == .ipv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }

    /// Size of the attribute value.
    public var encodedSize: Int { 4 + family.addressSize }

    init(plainValue v: UnsafeRawBufferPointer, offset: Int) throws(STUNError) {
        guard v.count >= 4, let family = Family(rawValue: v[1]), v.count == 4 + family.addressSize else {
            throw .badAttribute(type: STUNAttributeType.mappedAddress.rawValue, offset: offset)
        }
        let port = v.u16(2)
        if family == .ipv4 {
            self.init(ipv4: v.u32(4), port: port)
        } else {
            self.init(ipv6High: v.u64(4), low: v.u64(12), port: port)
        }
    }

    init(xorValue v: UnsafeRawBufferPointer, transactionID t: STUNTransactionID, offset: Int) throws(STUNError) {
        guard v.count >= 4, let family = Family(rawValue: v[1]), v.count == 4 + family.addressSize else {
            throw .badAttribute(type: STUNAttributeType.xorMappedAddress.rawValue, offset: offset)
        }
        let port = v.u16(2) ^ UInt16(STUN.magicCookie >> 16)
        if family == .ipv4 {
            self.init(ipv4: v.u32(4) ^ STUN.magicCookie, port: port)
        } else {
            let (kh, kl) = STUNAddress.ipv6XORKey(t)
            self.init(ipv6High: v.u64(4) ^ kh, low: v.u64(12) ^ kl, port: port)
        }
    }

    /// cookie ‖ transaction ID as two 64-bit words (§14.2).
    static func ipv6XORKey(_ t: STUNTransactionID) -> (UInt64, UInt64) {
        (UInt64(STUN.magicCookie) << 32 | UInt64(t.w0), UInt64(t.w1) << 32 | UInt64(t.w2))
    }

    func writePlain(_ b: UnsafeMutableRawBufferPointer, at o: Int) {
        b[o] = 0
        b[o + 1] = family.rawValue
        b.put16(port, at: o + 2)
        if family == .ipv4 {
            b.put32(ipv4, at: o + 4)
        } else {
            b.put64(high, at: o + 4)
            b.put64(low, at: o + 12)
        }
    }

    func writeXOR(_ b: UnsafeMutableRawBufferPointer, at o: Int, transactionID t: STUNTransactionID) {
        b[o] = 0
        b[o + 1] = family.rawValue
        b.put16(port ^ UInt16(STUN.magicCookie >> 16), at: o + 2)
        if family == .ipv4 {
            b.put32(ipv4 ^ STUN.magicCookie, at: o + 4)
        } else {
            let (kh, kl) = STUNAddress.ipv6XORKey(t)
            b.put64(high ^ kh, at: o + 4)
            b.put64(low ^ kl, at: o + 12)
        }
    }
}
