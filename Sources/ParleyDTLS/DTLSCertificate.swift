import COpenSSL
import ParleyCore

/// A self-signed ECDSA P-256 certificate and its key, made at start-up: what
/// the DTLS endpoint presents, and whose SHA-256 fingerprint goes in the SDP
/// (`a=fingerprint:sha-256 AB:CD:…`, RFC 8122 §5). WebRTC peers check the
/// fingerprint, not a chain, so nothing is signed by anyone else.
public final class DTLSCertificate: @unchecked Sendable {
    let key: OpaquePointer
    let x509: OpaquePointer
    /// The SHA-256 fingerprint, upper-case hex pairs joined by ':'.
    public let fingerprint: String

    /// A new key pair and a certificate for it, valid from a day ago for 30 days.
    public static func generate(commonName: String = "parley") throws(DTLSError) -> DTLSCertificate {
        guard let pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw .openSSL("EVP_PKEY_CTX_new_id") }
        defer { EVP_PKEY_CTX_free(pctx) }
        var pkey: OpaquePointer?
        guard EVP_PKEY_keygen_init(pctx) == 1,
              EVP_PKEY_CTX_set_ec_paramgen_curve_nid(pctx, NID_X9_62_prime256v1) == 1,
              EVP_PKEY_keygen(pctx, &pkey) == 1, let key = pkey else { throw .openSSL("P-256 key generation") }
        guard let x = X509_new() else { EVP_PKEY_free(key); throw .openSSL("X509_new") }
        let serial = SecureRandom.bytes(4).reduce(0) { $0 << 8 | Int($1) } & 0x7fff_ffff
        var ok = X509_set_version(x, 2) == 1
        ok = ok && ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1
        ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -86_400) != nil
        ok = ok && X509_gmtime_adj(X509_getm_notAfter(x), 30 * 86_400) != nil
        ok = ok && X509_set_pubkey(x, key) == 1
        if ok, let name = X509_get_subject_name(x) {
            ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, Array(commonName.utf8), Int32(commonName.utf8.count), -1, 0) == 1
            ok = ok && X509_set_issuer_name(x, name) == 1
        }
        ok = ok && X509_sign(x, key, EVP_sha256()) > 0
        guard ok else { X509_free(x); EVP_PKEY_free(key); throw .openSSL("self-signed certificate") }
        guard let fp = Self.sha256Fingerprint(x) else { X509_free(x); EVP_PKEY_free(key); throw .openSSL("X509_digest") }
        return DTLSCertificate(key: key, x509: x, fingerprint: fp)
    }

    private init(key: OpaquePointer, x509: OpaquePointer, fingerprint: String) {
        self.key = key
        self.x509 = x509
        self.fingerprint = fingerprint
    }

    deinit {
        X509_free(x509)
        EVP_PKEY_free(key)
    }

    /// The SHA-256 digest of a certificate's DER, as `AB:CD:…`.
    static func sha256Fingerprint(_ x: OpaquePointer) -> String? {
        var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var n: UInt32 = 0
        guard X509_digest(x, EVP_sha256(), &md, &n) == 1, n == 32 else { return nil }
        return DTLSFingerprint.format(Array(md[0..<Int(n)]))
    }
}

/// Fingerprints as SDP writes them (RFC 8122 §5: hash name, then upper-case
/// hex pairs joined by ':'). Only sha-256 is used.
public enum DTLSFingerprint {
    public static func format(_ digest: [UInt8]) -> String { Hex.encode(digest, uppercase: true, separator: UInt8(ascii: ":")) }

    /// Parses `AB:CD:…` (either case) into 32 bytes; nil when it is not a SHA-256 fingerprint.
    public static func parse(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 32 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard p.utf8.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }
}
