import COpenSSL
import Foundation

/// SHA-1 from OpenSSL, behind a Swift signature.
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
}
