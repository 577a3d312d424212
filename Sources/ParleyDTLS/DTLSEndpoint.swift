import COpenSSL
import ParleyCore
import ParleySRTP

/// What went wrong in DTLS.
public enum DTLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An OpenSSL call failed (with the first queued OpenSSL error, if any).
    case openSSL(String)
    /// The handshake failed (alert, bad certificate, no common SRTP profile…).
    case handshakeFailed(String)
    /// The peer's certificate does not have the fingerprint the SDP announced.
    case fingerprintMismatch
    /// No handshake within the deadline.
    case timedOut

    public var description: String {
        switch self {
        case .openSSL(let m): return "OpenSSL: \(m)"
        case .handshakeFailed(let m): return "DTLS handshake failed: \(m)"
        case .fingerprintMismatch: return "the peer's certificate does not match the fingerprint in its SDP"
        case .timedOut: return "DTLS handshake timed out"
        }
    }

    static func fromQueue(_ what: String) -> DTLSError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return .openSSL(what) }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buf, buf.count)
        return .openSSL("\(what): \(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
    }
}

/// Which side of the handshake an endpoint takes. In WebRTC the SDP's
/// `a=setup` decides: Parley answers `setup:passive`, so it is the server.
public enum DTLSRole: Sendable {
    case server, client
}

/// The SRTP keys a DTLS-SRTP handshake exported (RFC 5764 §4.2), named
/// from this endpoint's side: `local` protects what it sends, `remote`
/// unprotects what it receives.
public struct DTLSSRTPKeys: Sendable, Equatable {
    public var suite: SRTPSuite
    public var local: SRTPKeyMaterial
    public var remote: SRTPKeyMaterial
}

/// DTLS settings shared by many endpoints: the certificate, the SRTP
/// protection profiles in order of preference, the record MTU (an `SSL_CTX`).
public final class DTLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let certificate: DTLSCertificate
    /// Largest datagram an endpoint sends (handshake messages are fragmented to fit).
    public let mtu: Int
    /// First retransmission timeout of a flight; it doubles up to 60 s (RFC 6347 §4.2.4.1).
    public let initialRetransmit: Duration

    /// `profiles`: the `use_srtp` profiles offered (client) or accepted
    /// (server), most preferred first (RFC 5764 §4.1.2; an OpenSSL server
    /// picks by its own order).
    public init(certificate: DTLSCertificate, profiles: [SRTPSuite] = [.aeadAES128GCM, .aesCM128HmacSHA1_80],
                mtu: Int = 1200, initialRetransmit: Duration = .seconds(1)) throws(DTLSError) {
        guard let ctx = SSL_CTX_new(DTLS_method()) else { throw .fromQueue("SSL_CTX_new") }
        self.ctx = ctx
        self.certificate = certificate
        self.mtu = mtu
        self.initialRetransmit = initialRetransmit
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(DTLS1_2_VERSION), nil)
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, Int(DTLS1_2_VERSION), nil)
        guard SSL_CTX_use_certificate(ctx, certificate.x509) == 1, SSL_CTX_use_PrivateKey(ctx, certificate.key) == 1,
              SSL_CTX_check_private_key(ctx) == 1 else { throw .fromQueue("certificate") }
        // ECDHE with ECDSA, AEAD first (what browsers negotiate).
        _ = SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA")
        let names = profiles.map(\.dtlsProfileName).joined(separator: ":")
        // Returns 0 on success (sic).
        guard SSL_CTX_set_tlsext_use_srtp(ctx, names) == 0 else { throw .fromQueue("use_srtp \(names)") }
        // Both sides present certificates; the chain is not checked (self-signed), the fingerprint is, after the handshake.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) { _, _ in 1 }
    }

    deinit { SSL_CTX_free(ctx) }
}

extension SRTPSuite {
    /// The DTLS-SRTP protection profile name (RFC 5764 §4.1.2, RFC 7714 §14.2).
    public var dtlsProfileName: String {
        switch self {
        case .aesCM128HmacSHA1_80: return "SRTP_AES128_CM_SHA1_80"
        case .aeadAES128GCM: return "SRTP_AEAD_AES_128_GCM"
        }
    }

    /// The suite of a profile id (`SRTP_PROTECTION_PROFILE.id`).
    init?(dtlsProfileID id: UInt) {
        switch id {
        case UInt(SRTP_AES128_CM_SHA1_80): self = .aesCM128HmacSHA1_80
        case UInt(SRTP_AEAD_AES_128_GCM): self = .aeadAES128GCM
        default: return nil
        }
    }
}

/// One DTLS 1.2 association over memory BIOs: no socket. Datagrams go in
/// through `receive`, datagrams to send come out of every call, and
/// `timerDeadline` says when `handleTimer` must run to retransmit a flight
/// (RFC 6347 §4.2.4). When the handshake completes, the peer's certificate
/// is checked against the fingerprint from its SDP and the SRTP keys are
/// exported (`keys`).
///
/// Not thread-safe: one owner (in the relay, the room's loop) calls it.
public final class DTLSEndpoint: @unchecked Sendable {
    public enum State: Sendable, Equatable {
        case handshaking
        case connected(DTLSSRTPKeys)
        case failed(DTLSError)
    }

    /// What one datagram did.
    public enum Input: Sendable, Equatable {
        /// Handshake data (possibly a retransmission): consumed.
        case handshake
        /// Not a DTLS record, or one that does not parse: dropped.
        case malformed
        /// Application data after the handshake (WebRTC data channels; not supported): dropped.
        case applicationData
    }

    public let role: DTLSRole
    public private(set) var state: State = .handshaking
    private let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer
    private let mtu: Int
    /// The first retransmission timeout in µs (read by the timer callback through the SSL's app data).
    fileprivate let initialRetransmitMicroseconds: UInt32
    private let expectedFingerprint: [UInt8]?
    private var started = false

    /// `remoteFingerprint`: the peer's SHA-256 certificate fingerprint from
    /// its SDP (`AB:CD:…`); nil accepts any certificate (tests only).
    public init(context: DTLSContext, role: DTLSRole, remoteFingerprint: String?) throws(DTLSError) {
        if let f = remoteFingerprint {
            guard let bytes = DTLSFingerprint.parse(f) else { throw .handshakeFailed("malformed fingerprint") }
            expectedFingerprint = bytes
        } else {
            expectedFingerprint = nil
        }
        guard let ssl = SSL_new(context.ctx) else { throw .fromQueue("SSL_new") }
        guard let r = BIO_new(BIO_s_mem()), let w = BIO_new(BIO_s_mem()) else { SSL_free(ssl); throw .fromQueue("BIO_new") }
        // An empty read BIO means "wait for more", not end of stream.
        _ = BIO_ctrl(r, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
        _ = BIO_ctrl(w, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
        SSL_set_bio(ssl, r, w)
        self.ssl = ssl
        rbio = r
        wbio = w
        self.role = role
        mtu = context.mtu
        let c = context.initialRetransmit.components
        initialRetransmitMicroseconds = UInt32(clamping: c.seconds * 1_000_000 + c.attoseconds / 1_000_000_000_000)
        // No path MTU discovery on a memory BIO: fragment handshake messages to `mtu`.
        _ = SSL_set_options(ssl, UInt64(1 << 12)) // SSL_OP_NO_QUERY_MTU
        _ = SSL_ctrl(ssl, SSL_CTRL_SET_MTU, mtu - 28, nil) // record layer MTU below IPv4+UDP headers
        if role == .server { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
        _ = SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(self).toOpaque())
        DTLS_set_timer_cb(ssl) { ssl, previous in
            guard let ssl, let me = SSL_get_ex_data(ssl, 0) else { return previous == 0 ? 1_000_000 : Swift.min(previous * 2, 60_000_000) }
            let initial = Unmanaged<DTLSEndpoint>.fromOpaque(me).takeUnretainedValue().initialRetransmitMicroseconds
            return previous == 0 ? initial : Swift.min(previous * 2, 60_000_000)
        }
    }

    deinit { SSL_free(ssl) }

    /// Starts the handshake: for a client, the ClientHello to send. A server sends nothing until it hears one.
    public func start() -> [[UInt8]] {
        guard !started else { return [] }
        started = true
        if role == .client { step() }
        return drain()
    }

    /// One datagram from the peer: returns what it did and the datagrams to send back.
    public func receive(_ datagram: UnsafeRawBufferPointer) -> (Input, [[UInt8]]) {
        guard DTLSRecords.isWellFormed(datagram) else { return (.malformed, []) }
        started = true
        _ = BIO_write(rbio, datagram.baseAddress, Int32(datagram.count))
        if case .handshaking = state {
            step()
        }
        var input = Input.handshake
        if case .connected = state, BIO_ctrl_pending(rbio) > 0 || DTLSRecords.hasApplicationData(datagram) {
            // Read (and discard) application data so the BIO does not keep it; handshake retransmissions
            // from the peer are answered by OpenSSL inside SSL_read.
            var buf = [UInt8](repeating: 0, count: 2048)
            while SSL_read(ssl, &buf, Int32(buf.count)) > 0 { input = .applicationData }
            ERR_clear_error()
            _ = BIO_ctrl(rbio, BIO_CTRL_RESET, 0, nil)
        }
        return (input, drain())
    }

    /// When `handleTimer` must run (monotonic nanoseconds from `now`), or nil when no flight waits for an answer.
    public func timerDelay() -> Duration? {
        var tv = timeval()
        guard SSL_ctrl(ssl, DTLS_CTRL_GET_TIMEOUT, 0, &tv) == 1 else { return nil }
        return .seconds(tv.tv_sec) + .microseconds(tv.tv_usec)
    }

    /// The retransmission timer fired: the last flight again (with backoff), if still unanswered.
    public func handleTimer() -> [[UInt8]] {
        guard case .handshaking = state else { return [] }
        if SSL_ctrl(ssl, DTLS_CTRL_HANDLE_TIMEOUT, 0, nil) < 0 {
            fail(.handshakeFailed("retransmission limit"))
        }
        return drain()
    }

    /// Gives up: the handshake did not finish in time.
    public func timeOut() {
        if case .handshaking = state { state = .failed(.timedOut) }
    }

    /// Sends close_notify (the datagrams to send).
    public func close() -> [[UInt8]] {
        if case .connected = state { _ = SSL_shutdown(ssl) }
        return drain()
    }

    private func step() {
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            finish()
            return
        }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            ERR_clear_error()
        default:
            fail(DTLSError.fromQueue("handshake"))
        }
    }

    private func fail(_ e: DTLSError) {
        if case .openSSL(let m) = e { state = .failed(.handshakeFailed(m)) } else { state = .failed(e) }
    }

    private func finish() {
        guard let peer = SSL_get1_peer_certificate(ssl) else { state = .failed(.handshakeFailed("no peer certificate")); return }
        let fp = DTLSCertificate.sha256Fingerprint(peer)
        X509_free(peer)
        if let expected = expectedFingerprint, fp.flatMap(DTLSFingerprint.parse) != expected {
            state = .failed(.fingerprintMismatch)
            return
        }
        guard let profile = SSL_get_selected_srtp_profile(ssl),
              let suite = SRTPSuite(dtlsProfileID: UInt(profile.pointee.id)) else {
            state = .failed(.handshakeFailed("no SRTP profile negotiated (use_srtp)"))
            return
        }
        // RFC 5764 §4.2: client key ‖ server key ‖ client salt ‖ server salt.
        let k = suite.keyLength, s = suite.saltLength
        var out = [UInt8](repeating: 0, count: 2 * (k + s))
        let label = "EXTRACTOR-dtls_srtp"
        guard SSL_export_keying_material(ssl, &out, out.count, label, label.utf8.count, nil, 0, 0) == 1 else {
            state = .failed(.fromQueue("export keying material"))
            return
        }
        let clientKey = Array(out[0..<k]), serverKey = Array(out[k..<2 * k])
        let clientSalt = Array(out[2 * k..<2 * k + s]), serverSalt = Array(out[2 * k + s..<2 * (k + s)])
        do {
            let client = try SRTPKeyMaterial(suite: suite, masterKey: clientKey, masterSalt: clientSalt)
            let server = try SRTPKeyMaterial(suite: suite, masterKey: serverKey, masterSalt: serverSalt)
            state = .connected(role == .server ? DTLSSRTPKeys(suite: suite, local: server, remote: client)
                                               : DTLSSRTPKeys(suite: suite, local: client, remote: server))
        } catch {
            state = .failed(.handshakeFailed("\(error)"))
        }
    }

    /// What OpenSSL wrote, cut into datagrams of at most `mtu` at record boundaries.
    private func drain() -> [[UInt8]] {
        var p: UnsafeMutablePointer<CChar>?
        let n = Int(parley_BIO_get_mem_data(wbio, &p))
        guard n > 0, let base = p else { return [] }
        let bytes = UnsafeRawBufferPointer(start: base, count: n)
        var out: [[UInt8]] = []
        var current: [UInt8] = []
        var off = 0
        while off < n {
            let len = off + 13 <= n ? Int(bytes[off + 11]) << 8 | Int(bytes[off + 12]) : n - off - 13
            let end = Swift.min(n, off + 13 + Swift.max(0, len))
            if !current.isEmpty, current.count + (end - off) > mtu - 28 {
                out.append(current)
                current = []
            }
            current.append(contentsOf: bytes[off..<end])
            off = end
        }
        if !current.isEmpty { out.append(current) }
        _ = BIO_ctrl(wbio, BIO_CTRL_RESET, 0, nil)
        return out
    }
}

/// DTLS record framing (RFC 6347 §4.1): a 13-byte header (content type,
/// version, epoch, sequence number, length) and the fragment.
///
///      0                   1                   2                   3
///     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///     |  content type |    version (0xFEFD / 0xFEFF)  |     epoch     …
///     … epoch         |            sequence number (48 bits)          …
///     …               |            length             |  fragment …
public enum DTLSRecords {
    static let headerSize = 13
    static let applicationData: UInt8 = 23

    /// Whether `datagram` is one or more whole DTLS records: content type
    /// 20–23 (change_cipher_spec, alert, handshake, application_data), a
    /// DTLS version (major 0xFE) and lengths that add up. Anything else is
    /// garbage to drop before OpenSSL sees it.
    public static func isWellFormed(_ datagram: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        let n = datagram.count
        guard n >= headerSize else { return false }
        while off < n {
            guard n - off >= headerSize else { return false }
            let type = datagram[off]
            guard (20...23).contains(type), datagram[off + 1] == 0xFE else { return false }
            let len = Int(datagram[off + 11]) << 8 | Int(datagram[off + 12])
            guard len <= n - off - headerSize, len <= 16_384 + 2048 else { return false }
            off += headerSize + len
        }
        return true
    }

    static func hasApplicationData(_ datagram: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off + headerSize <= datagram.count {
            if datagram[off] == applicationData { return true }
            off += headerSize + (Int(datagram[off + 11]) << 8 | Int(datagram[off + 12]))
        }
        return false
    }
}
