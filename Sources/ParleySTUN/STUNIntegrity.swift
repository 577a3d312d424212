import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ParleyCore

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

    /// HMAC over `first` followed by `second` into `out` (20 or 32 bytes),
    /// on this thread's reusable EVP_MAC contexts: no allocation per call
    /// (two fixed parameters rather than a variadic, which would build an array).
    static func hmac(sha256: Bool, key: UnsafeRawBufferPointer, _ first: UnsafeRawBufferPointer,
                     _ second: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                     into out: UnsafeMutableRawBufferPointer) {
        let size = sha256 ? STUN.sha256Size : STUN.sha1Size
        precondition(out.count >= size)
        let ctx = HMACContexts.current.context(sha256: sha256)
        var zero: UInt8 = 0
        withUnsafeMutablePointer(to: &zero) { z in
            // A non-null pointer even for an empty key: NULL would mean "keep the previous key".
            let k = key.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(z)
            var ok = EVP_MAC_init(ctx, k, key.count, nil) == 1
            if first.count > 0 {
                ok = ok && EVP_MAC_update(ctx, first.baseAddress!.assumingMemoryBound(to: UInt8.self), first.count) == 1
            }
            if second.count > 0 {
                ok = ok && EVP_MAC_update(ctx, second.baseAddress!.assumingMemoryBound(to: UInt8.self), second.count) == 1
            }
            var written = 0
            ok = ok && EVP_MAC_final(ctx, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &written, out.count) == 1
            precondition(ok && written == size, "OpenSSL HMAC failed")
        }
    }

    /// Verifies the integrity attribute at `offset` (whose value length is
    /// already validated) against `key`: the header with its length patched
    /// (§14.5) is hashed from a 4-byte stack copy, the rest in place.
    static func verify(_ m: UnsafeRawBufferPointer, attributeOffset o: Int, key: UnsafeRawBufferPointer, sha256: Bool) -> Bool {
        let valueLength = Int(m.u16(o + 2))
        let patchedLength = UInt16(o + 4 + valueLength - STUN.headerSize)
        var head: UInt32 = 0
        var mac = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &head) { h in
            h[0] = m[0]
            h[1] = m[1]
            h.put16(patchedLength, at: 2)
            return withUnsafeMutableBytes(of: &mac) { out in
                hmac(sha256: sha256, key: key, UnsafeRawBufferPointer(h), m.slice(4..<o), into: out)
                // Constant-time compare of the (possibly truncated, §14.6) value.
                var diff: UInt8 = 0
                for i in 0..<valueLength { diff |= out[i] ^ m[o + 4 + i] }
                return diff == 0
            }
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

/// One thread's HMAC-SHA1 and HMAC-SHA256 contexts. OpenSSL 3's one-shot
/// HMAC() fetches the algorithm and allocates a context on every call
/// (~10 µs); keeping fetched, keyed-per-call contexts per thread makes
/// MESSAGE-INTEGRITY cost one re-key and a few hash blocks.
final class HMACContexts {
    let sha1: OpaquePointer
    let sha256: OpaquePointer

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        let rc = pthread_key_create(&k) { p in
            if let p { Unmanaged<HMACContexts>.fromOpaque(p).release() }
        }
        precondition(rc == 0, "pthread_key_create failed")
        return k
    }()

    /// This thread's contexts, created on first use.
    static var current: HMACContexts {
        if let p = pthread_getspecific(key) { return Unmanaged<HMACContexts>.fromOpaque(p).takeUnretainedValue() }
        let c = HMACContexts()
        pthread_setspecific(key, Unmanaged.passRetained(c).toOpaque())
        return c
    }

    private init() {
        guard let mac = EVP_MAC_fetch(nil, "HMAC", nil) else { fatalError("OpenSSL has no HMAC") }
        defer { EVP_MAC_free(mac) }
        func make(_ digest: String) -> OpaquePointer {
            guard let ctx = EVP_MAC_CTX_new(mac) else { fatalError("EVP_MAC_CTX_new failed") }
            let ok = "digest".withCString { k in
                digest.withCString { v in
                    var params = [OSSL_PARAM_construct_utf8_string(k, UnsafeMutablePointer(mutating: v), 0),
                                  OSSL_PARAM_construct_end()]
                    return EVP_MAC_CTX_set_params(ctx, &params) == 1
                }
            }
            precondition(ok, "cannot select \(digest) for HMAC")
            return ctx
        }
        sha1 = make("SHA1")
        sha256 = make("SHA256")
    }

    deinit {
        EVP_MAC_CTX_free(sha1)
        EVP_MAC_CTX_free(sha256)
    }

    @inline(__always) func context(sha256 wide: Bool) -> OpaquePointer { wide ? sha256 : sha1 }
}
