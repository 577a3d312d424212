import COpenSSL
import Foundation

/// The few OpenSSL primitives this module needs, behind Swift signatures.
enum Crypto {
    /// SHA-1 digest (20 bytes); used only for Sec-WebSocket-Accept (RFC 6455 §4.2.2).
    static func sha1<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        var out = [UInt8](repeating: 0, count: 20)
        let bytes = Array(data)
        var len: UInt32 = 0
        let ok = bytes.withUnsafeBytes { input in
            out.withUnsafeMutableBytes { o in
                EVP_Digest(input.baseAddress, input.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self),
                           &len, EVP_sha1(), nil)
            }
        }
        precondition(ok == 1 && len == 20, "EVP_Digest(SHA-1) failed")
        return out
    }

    /// HMAC-SHA-256 (32 bytes).
    static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
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
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 }
        }
    }

    /// Bytes from OpenSSL's CSPRNG.
    static func randomBytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBytes { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(count)) }
        guard ok == 1 else { throw CryptoError.randomFailed }
        return out
    }

    enum CryptoError: Error { case randomFailed }
}

/// Base64 (RFC 4648 §4) and base64url without padding (§5), strict.
public enum Base64 {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Strict decode: padding required, no whitespace, canonical trailing bits.
    public static func decode(_ string: String) -> [UInt8]? {
        guard let data = Data(base64Encoded: string) else { return nil }
        let bytes = [UInt8](data)
        // Reject non-canonical encodings (stray bits in the last character).
        return encode(bytes) == string ? bytes : nil
    }

    public static func encodeURL(_ bytes: [UInt8]) -> String {
        var s = encode(bytes)
        while s.last == "=" { s.removeLast() }
        return String(s.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }

    /// Decodes unpadded base64url; nil on any character outside the alphabet
    /// or a non-canonical encoding.
    public static func decodeURL<S: StringProtocol>(_ string: S) -> [UInt8]? {
        var std = ""
        std.reserveCapacity(string.utf8.count + 3)
        for c in string.unicodeScalars {
            switch c {
            case "A"..."Z", "a"..."z", "0"..."9": std.unicodeScalars.append(c)
            case "-": std.append("+")
            case "_": std.append("/")
            default: return nil
            }
        }
        switch std.utf8.count % 4 {
        case 1: return nil
        case 2: std += "=="
        case 3: std += "="
        default: break
        }
        return decode(std)
    }
}
