import Foundation
import COpenSSL
import ParleyIO

/// TLS for outbound signalling connections (`parley sdp`).
enum ClientTLS {
    /// A client context that does not verify the chain (self-signed servers).
    /// With `pinnedFingerprint` the caller must check the server first with
    /// `checkFingerprint` (the IO layer has no pinning hook yet).
    static func context(pinnedFingerprint: String?) throws -> TLSContext {
        try TLSContext.client()
    }

    /// Normalises "ab:cd…" / "ABCD…" to "AB:CD:…".
    static func normalise(_ fp: String) -> String {
        let hex = fp.uppercased().filter { $0.isHexDigit }
        var out = ""
        for (i, c) in hex.enumerated() {
            if i > 0 && i % 2 == 0 { out += ":" }
            out.append(c)
        }
        return out
    }

    /// Connects once with a blocking OpenSSL client, reads the server's
    /// certificate and compares its SHA-256 with `expected`. Throws on mismatch.
    static func checkFingerprint(address: SocketAddress, serverName: String, expected: String) throws {
        let fd = socket(address.protocolFamily, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SignallingClient.Failure("socket: errno \(errno)") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard address.withSockAddr({ connect(fd, $0, $1) }) == 0 else {
            throw SignallingClient.Failure("connect \(address): \(String(cString: strerror(errno)))")
        }
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw SignallingClient.Failure("SSL_CTX_new failed") }
        defer { SSL_CTX_free(ctx) }
        guard let ssl = SSL_new(ctx) else { throw SignallingClient.Failure("SSL_new failed") }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, fd)
        guard SSL_connect(ssl) == 1 else { throw SignallingClient.Failure("TLS handshake with \(address) failed") }
        defer { SSL_shutdown(ssl) }
        guard let cert = SSL_get1_peer_certificate(ssl) else { throw SignallingClient.Failure("the server sent no certificate") }
        defer { X509_free(cert) }
        var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        guard X509_digest(cert, EVP_sha256(), &md, &len) == 1 else { throw SignallingClient.Failure("X509_digest failed") }
        let got = md.prefix(Int(len)).map { b -> String in
            let s = String(b, radix: 16, uppercase: true)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
        guard got == normalise(expected) else {
            throw SignallingClient.Failure("server certificate fingerprint \(got) does not match --fingerprint \(normalise(expected))")
        }
    }
}
