/// Hexadecimal digits, as HTTP chunk sizes and %-escapes, JSON `\u`
/// escapes and OpenSSL's key log lines write them.
public enum Hex {
    /// The value of one ASCII hex digit (either case), or nil.
    @inlinable @inline(__always)
    public static func digit(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }

    /// The bytes that pairs of hex digits spell (either case, nothing
    /// between them); nil for an odd count or anything not a hex digit.
    public static func decode<C: Collection<UInt8>>(_ text: C) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 2)
        var it = text.makeIterator()
        while let a = it.next(), let b = it.next() {
            guard let hi = digit(a), let lo = digit(b) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }

    /// Two hex digits per byte, lower case (or upper), with `separator`
    /// between bytes when given (`"AB:CD:…"`, a certificate fingerprint).
    public static func encode<C: Collection<UInt8>>(_ bytes: C, uppercase: Bool = false, separator: UInt8? = nil) -> String {
        let digits: StaticString = uppercase ? "0123456789ABCDEF" : "0123456789abcdef"
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 3)
        for b in bytes {
            if let separator, !out.isEmpty { out.append(separator) }
            out.append(digits.utf8Start[Int(b >> 4)])
            out.append(digits.utf8Start[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
