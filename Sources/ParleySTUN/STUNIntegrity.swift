import COpenSSL

/// MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT computations (RFC 8489 §14.5–§14.7).
///
/// Both cover the message up to (not including) their own attribute, with
/// the header's length field rewritten as if the message ended right after
/// that attribute. Verification therefore hashes a patched header plus the
/// unchanged bytes in between.
public enum STUNIntegrity {
    /// CRC-32 (ISO-HDLC, polynomial 0xEDB88320 reflected), table-driven.
    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    @inline(__always)
    static func crcUpdate(_ crc: UInt32, _ b: UnsafeRawBufferPointer) -> UInt32 {
        var c = crc
        crcTable.withUnsafeBufferPointer { t in
            for byte in b { c = t[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        }
        return c
    }

    /// Plain CRC-32 of `bytes` (as zlib's crc32()).
    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        crcUpdate(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
    }

    /// The FINGERPRINT value for a FINGERPRINT attribute at `attributeOffset` (§14.7).
    static func fingerprint(_ m: UnsafeRawBufferPointer, attributeOffset fp: Int) -> UInt32 {
        var header = (UInt32(0), UInt32(0))
        let patchedLength = UInt16(fp + 8 - STUN.headerSize)
        var c: UInt32 = 0xFFFF_FFFF
        withUnsafeMutableBytes(of: &header) { h in
            h[0] = m[0]
            h[1] = m[1]
            h.put16(patchedLength, at: 2)
            c = crcUpdate(c, UnsafeRawBufferPointer(rebasing: h[0..<4]))
        }
        c = crcUpdate(c, m.slice(4..<fp))
        return (c ^ 0xFFFF_FFFF) ^ STUN.fingerprintXOR
    }

    /// HMAC over `data` into `out` (20 or 32 bytes); one OpenSSL call.
    static func hmac(sha256: Bool, key: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer,
                     into out: UnsafeMutableRawBufferPointer) {
        var len: UInt32 = 0
        // OpenSSL wants a non-null key pointer even for an empty key.
        var zero: UInt8 = 0
        withUnsafeMutablePointer(to: &zero) { z in
            let k = key.baseAddress ?? UnsafeRawPointer(z)
            let md = sha256 ? EVP_sha256() : EVP_sha1()
            let r = HMAC(md, k, Int32(key.count), data.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(z),
                         data.count, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &len)
            precondition(r != nil && Int(len) == (sha256 ? STUN.sha256Size : STUN.sha1Size), "HMAC failed")
        }
    }

    /// Verifies the integrity attribute at `offset` (whose value length is
    /// already validated) against `key`. Copies the covered prefix to a
    /// stack buffer to patch its length field: no heap allocation in Swift.
    static func verify(_ m: UnsafeRawBufferPointer, attributeOffset o: Int, key: UnsafeRawBufferPointer, sha256: Bool) -> Bool {
        let valueLength = Int(m.u16(o + 2))
        let patchedLength = UInt16(o + 4 + valueLength - STUN.headerSize)
        return withUnsafeTemporaryAllocation(byteCount: o + STUN.sha256Size, alignment: 8) { tmp in
            let prefix = UnsafeMutableRawBufferPointer(rebasing: tmp[0..<o])
            prefix.copyMemory(from: m.slice(0..<o))
            prefix.put16(patchedLength, at: 2)
            let mac = UnsafeMutableRawBufferPointer(rebasing: tmp[o..<(o + STUN.sha256Size)])
            hmac(sha256: sha256, key: key, data: UnsafeRawBufferPointer(prefix), into: mac)
            // Constant-time compare of the (possibly truncated, §14.6) value.
            var diff: UInt8 = 0
            for i in 0..<valueLength { diff |= mac[i] ^ m[o + 4 + i] }
            return diff == 0
        }
    }

    /// The long-term credential key, RFC 8489 §9.2.2: MD5(username ":" realm ":" password),
    /// inputs already SASLprep/OpaqueString-processed by the caller.
    public static func longTermKey(username: [UInt8], realm: [UInt8], password: [UInt8]) -> [UInt8] {
        let input = username + [UInt8(ascii: ":")] + realm + [UInt8(ascii: ":")] + password
        var out = [UInt8](repeating: 0, count: 16)
        var len: UInt32 = 0
        input.withUnsafeBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in
                _ = EVP_Digest(i.baseAddress, i.count, o.baseAddress, &len, EVP_md5(), nil)
            }
        }
        return out
    }
}
