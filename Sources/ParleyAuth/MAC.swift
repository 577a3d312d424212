import ParleyCore
import COpenSSL

/// The OpenSSL primitives tokens need, behind Swift signatures.
public enum MAC {
    /// HMAC-SHA-256 (32 bytes).
    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        let result = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBytes { o in
                    HMAC(EVP_sha256(), k.baseAddress, Int32(k.count),
                         d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count,
                         o.baseAddress!.assumingMemoryBound(to: UInt8.self), &len)
                }
            }
        }
        precondition(result != nil && len == 32, "HMAC-SHA-256 failed")
        return out
    }

    /// Constant-time equality (CRYPTO_memcmp): the time taken does not depend
    /// on where the buffers differ, so a MAC cannot be guessed byte by byte.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 }
        }
    }
}
