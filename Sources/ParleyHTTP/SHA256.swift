import COpenSSL

/// An incremental SHA-256 (FIPS 180-4) over OpenSSL's EVP interface: for
/// content that arrives in pieces (an upload streamed to disk), so the whole
/// never has to be in memory. Not thread-safe; one per stream.
public final class SHA256 {
    private let ctx: OpaquePointer

    public init() {
        guard let c = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed (out of memory)") }
        precondition(EVP_DigestInit_ex(c, EVP_sha256(), nil) == 1, "EVP_DigestInit_ex(SHA-256) failed")
        ctx = c
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(ctx, base, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The 32-byte digest; the hasher is spent after this.
    public func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        let ok = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) }
        precondition(ok == 1 && len == 32, "EVP_DigestFinal_ex failed")
        return out
    }
}
