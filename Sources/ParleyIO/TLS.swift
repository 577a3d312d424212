import Glibc
import COpenSSL
import ParleyCore

/// A TLS failure, with OpenSSL's error text.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "TLS: \(message)" }

    /// Drains OpenSSL's (per-thread) error queue into one message.
    static func fromQueue(_ what: String) -> TLSError {
        var parts: [String] = []
        var buf = [CChar](repeating: 0, count: 256)
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            ERR_error_string_n(e, &buf, buf.count)
            parts.append(String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return TLSError(parts.isEmpty ? what : "\(what): \(parts.joined(separator: "; "))")
    }
}

/// Who protects a server connection's records after its TLS 1.3 handshake
/// (config key `tls-record-layer`).
public enum TLSRecordLayer: String, Sendable {
    /// OpenSSL does the handshake, then Parley's ``TLS13RecordProtection``
    /// takes the traffic keys and the `SSL` is freed.
    case parley
    /// OpenSSL for the whole connection (one `SSL` per connection).
    case openssl
}

/// OpenSSL's key log callback (a server context with the `.parley` record
/// layer): hands the application traffic secrets to the connection's
/// ``TLSSession``. They are kept in memory only until the handshake is
/// done, and never written anywhere.
private let tlsKeyLogCallback: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { ssl, line in
    guard let ssl, let line, let session = SSL_get_ex_data(ssl, 0) else { return }
    Unmanaged<TLSSession>.fromOpaque(session).takeUnretainedValue().keyLogLine(line)
}

/// TLS configuration (an OpenSSL `SSL_CTX`), shared by many connections and
/// loops. Pass it to ``TCPConnection/adopt(_:on:options:tls:handler:)``,
/// ``TCPConnection/connect(to:on:options:tls:handler:)`` or the
/// ``TCPListener`` convenience initializer: the connection then runs TLS
/// between the socket and its handler, and the handler sees plaintext only.
///
/// TLS 1.2 minimum. The engine works on memory BIOs: ciphertext moves through
/// the connection's normal non-blocking read/write paths, and OpenSSL's
/// WANT_READ ("need more bytes from the peer") simply waits for the next read.
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    let isServer: Bool
    /// Who protects records once a TLS 1.3 handshake is done (servers only).
    let recordLayer: TLSRecordLayer
    let serverName: String?
    /// `"AB:CD:…"`: the SHA-256 the peer's certificate must have (client only).
    let pinnedSHA256: String?

    private init(ctx: OpaquePointer, isServer: Bool, serverName: String?, pinnedSHA256: String? = nil,
                 recordLayer: TLSRecordLayer = .openssl) {
        self.ctx = ctx; self.isServer = isServer; self.serverName = serverName; self.pinnedSHA256 = pinnedSHA256
        self.recordLayer = recordLayer
    }

    deinit { SSL_CTX_free(ctx) }

    private static func newContext(server: Bool) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.fromQueue("SSL_CTX_new")
        }
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        // An idle connection holds no record buffers (about 34 KB: 17 KB in
        // each direction); OpenSSL takes them again for the next record.
        _ = parley_SSL_CTX_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS))
        return ctx
    }

    /// A server context from a PEM certificate (chain) file and PEM private key.
    ///
    /// With `recordLayer` `.parley` (the default) a connection that
    /// negotiated TLS 1.3 with an AES-GCM or ChaCha20-Poly1305 suite hands
    /// its traffic keys to ``TLS13RecordProtection`` once the handshake is
    /// done and frees its `SSL`: an idle connection then holds about 150
    /// bytes of TLS state instead of about 14 KB. TLS 1.2 connections stay
    /// with OpenSSL. The server keeps no session cache (TLS 1.3 and 1.2
    /// resumption use stateless tickets).
    public static func server(certificateChainFile: String, privateKeyFile: String,
                              recordLayer: TLSRecordLayer = .parley) throws(TLSError) -> TLSContext {
        let ctx = try newContext(server: true)
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_SESS_CACHE_MODE, Int(SSL_SESS_CACHE_OFF), nil)
        if recordLayer == .parley { SSL_CTX_set_keylog_callback(ctx, tlsKeyLogCallback) }
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateChainFile) == 1 else {
            SSL_CTX_free(ctx); throw TLSError.fromQueue("certificate \(certificateChainFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, privateKeyFile, SSL_FILETYPE_PEM) == 1 else {
            SSL_CTX_free(ctx); throw TLSError.fromQueue("private key \(privateKeyFile)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            SSL_CTX_free(ctx); throw TLSError.fromQueue("key does not match certificate")
        }
        return TLSContext(ctx: ctx, isServer: true, serverName: nil, recordLayer: recordLayer)
    }

    /// A client context. With `trustedCertificatesFile` the peer must present
    /// a chain to one of those certificates and, if `serverName` is set, a
    /// certificate for that name; without it the chain is not verified (tests,
    /// load tools against self-signed servers). `serverName` is also sent as SNI.
    ///
    /// With `pinnedSHA256` (hex, colons optional, as `openssl x509
    /// -fingerprint -sha256` prints it) each connection checks the peer's
    /// certificate right after its own handshake and, on a mismatch, closes
    /// with ``TCPCloseReason/tls(_:)`` before the handler becomes active:
    /// not a byte of the handler's (queued) writes is sent.
    public static func client(trustedCertificatesFile: String? = nil, serverName: String? = nil,
                              pinnedSHA256: String? = nil) throws(TLSError) -> TLSContext {
        var pin: String?
        if let p = pinnedSHA256 {
            guard let digest = Hex.decode(p.utf8.filter { $0 != UInt8(ascii: ":") }), digest.count == 32 else {
                throw TLSError("a SHA-256 fingerprint is 64 hex digits (colons optional), got \"\(p)\"")
            }
            pin = Hex.encode(digest, uppercase: true, separator: UInt8(ascii: ":"))
        }
        let ctx = try newContext(server: false)
        if let file = trustedCertificatesFile {
            guard SSL_CTX_load_verify_locations(ctx, file, nil) == 1 else {
                SSL_CTX_free(ctx); throw TLSError.fromQueue("trust file \(file)")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        return TLSContext(ctx: ctx, isServer: false, serverName: serverName, pinnedSHA256: pin)
    }

    /// Limits the TLS 1.3 suites offered (OpenSSL's names, `:`-separated); tests.
    func setTLS13CipherSuites(_ suites: String) -> Bool { SSL_CTX_set_ciphersuites(ctx, suites) == 1 }

    func makeLayer() -> TCPStreamLayer? {
        TLSSession(context: self)
    }
}

/// One connection's TLS state: an `SSL` with two memory BIOs, or, once a
/// server's TLS 1.3 handshake is done and the context's record layer is
/// `.parley`, only ``TLS13RecordProtection`` (the `SSL` is freed). Loop-bound.
final class TLSSession: TCPStreamLayer {
    private var ssl: OpaquePointer?
    private var rbio: OpaquePointer? // ciphertext from the peer, read by OpenSSL
    private var wbio: OpaquePointer? // ciphertext OpenSSL wants sent
    private var handshakeDone = false
    private var closed = false
    private var pendingPlaintext = ByteQueue() // handler writes before the handshake finished
    private var released = false
    private let pinnedSHA256: String?
    private let takeOver: Bool
    /// The application traffic secrets from the key log, until the handshake is done.
    private var clientSecret: [UInt8]?
    private var serverSecret: [UInt8]?
    /// After the take-over: the keys, and the start of a record not all received.
    private var records: TLS13RecordProtection?
    private var partial = ByteQueue()
    private var peerClosed = false

    init?(context: TLSContext) {
        guard let ssl = SSL_new(context.ctx) else { return nil }
        guard let r = BIO_new(BIO_s_mem()), let w = BIO_new(BIO_s_mem()) else { SSL_free(ssl); return nil }
        SSL_set_bio(ssl, r, w) // ssl owns the BIOs now
        self.ssl = ssl; rbio = r; wbio = w
        pinnedSHA256 = context.pinnedSHA256
        takeOver = context.isServer && context.recordLayer == .parley
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let name = context.serverName {
                _ = parley_SSL_set_tlsext_host_name(ssl, name)
                if SSL_CTX_get_verify_mode(context.ctx) & SSL_VERIFY_PEER != 0 { _ = SSL_set1_host(ssl, name) }
            }
        }
        // For the key log callback; the SSL never outlives this object.
        if takeOver { SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(self).toOpaque()) }
    }

    /// True once Parley's record layer carries the connection (the `SSL` is freed).
    var protectsRecords: Bool { records != nil }

    func release() {
        guard !released else { return }
        released = true
        freeSSL()
        pendingPlaintext.release()
        partial.release()
        records?.wipe()
        records = nil
        wipeSecrets()
    }

    deinit { release() }

    private func freeSSL() {
        if let ssl { SSL_free(ssl) }
        ssl = nil; rbio = nil; wbio = nil
    }

    private func wipeSecrets() {
        if var c = clientSecret { for i in c.indices { c[i] = 0 }; clientSecret = nil }
        if var s = serverSecret { for i in s.indices { s[i] = 0 }; serverSecret = nil }
    }

    /// A key log line: `CLIENT_TRAFFIC_SECRET_0 <client random> <secret>` (and the server's).
    func keyLogLine(_ line: UnsafePointer<CChar>) {
        guard !handshakeDone else { return }
        let text = String(cString: line)
        let parts = text.split(separator: " ")
        guard parts.count == 3 else { return }
        let client = parts[0] == "CLIENT_TRAFFIC_SECRET_0"
        guard client || parts[0] == "SERVER_TRAFFIC_SECRET_0" else { return }
        guard parts[2].utf8.count <= 128, let bytes = Hex.decode(parts[2].utf8) else { return }
        if client { clientSecret = bytes } else { serverSecret = bytes }
    }

    /// Moves whatever OpenSSL produced into the connection's socket path.
    private func flushOutput(_ c: TCPConnection) {
        while let wbio, BIO_ctrl_pending(wbio) > 0 {
            var p: UnsafeMutablePointer<CChar>?
            let n = Int(parley_BIO_get_mem_data(wbio, &p))
            guard n > 0, let p else { break }
            c.transmit(UnsafeRawBufferPointer(start: p, count: n))
            if released { return } // the send failed and the connection closed
            _ = BIO_ctrl(wbio, BIO_CTRL_RESET, 0, nil)
        }
    }

    private func fail(_ c: TCPConnection, _ what: String) {
        let err = TLSError.fromQueue(what)
        flushOutput(c) // an alert, if OpenSSL queued one
        c.fail(.tls(err.message))
    }

    func start(_ c: TCPConnection) {
        ERR_clear_error()
        handshake(c)
    }

    private func handshake(_ c: TCPConnection) {
        guard let ssl else { return }
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            if let pin = pinnedSHA256 {
                // Checked on this connection, before anything is sent on it.
                let got = SSL_get1_peer_certificate(ssl).map { x in
                    defer { X509_free(x) }
                    return (try? TLSCertificate.fingerprint(x)) ?? "?"
                }
                guard got == pin else {
                    c.fail(.tls("server certificate sha256 \(got ?? "(none)") is not the pinned \(pin)"))
                    return
                }
            }
            handshakeDone = true
            let leftover = takeOver ? handOff() : nil
            flushOutput(c)
            guard !released else { var l = leftover; l?.release(); return }
            if let leftover {
                TCPMetrics.shared.tlsTakenOver.inc()
                freeSSL()
                partial = leftover
            }
            c.layerDidBecomeActive()
            if !pendingPlaintext.isEmpty && !released {
                let pending = pendingPlaintext
                pendingPlaintext = ByteQueue()
                var copy = pending
                send(c, copy.readable)
                copy.release()
            }
            return
        }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            flushOutput(c)
        default:
            fail(c, "handshake")
        }
    }

    /// Right after a server's handshake: when it is TLS 1.3 with a suite
    /// ``TLS13RecordProtection`` knows and both traffic secrets were logged,
    /// makes the record protection and returns the ciphertext OpenSSL has
    /// not read (the client's first records, possibly a part of one). Nil:
    /// OpenSSL keeps the connection.
    private func handOff() -> ByteQueue? {
        defer { wipeSecrets() }
        guard let ssl, let rbio, let wbio, SSL_version(ssl) == TLS1_3_VERSION, SSL_has_pending(ssl) == 0,
              let cipher = SSL_get_current_cipher(ssl),
              let suite = TLS13RecordProtection.Suite(rawValue: UInt16(truncatingIfNeeded: SSL_CIPHER_get_id(cipher))),
              let clientSecret, let serverSecret else { return nil }
        // What OpenSSL wrote in this last step (the NewSessionTickets, after
        // the client's Finished) is sealed under the server's application
        // key: each record of it used one sequence number.
        var p: UnsafeMutablePointer<CChar>?
        let n = Int(parley_BIO_get_mem_data(wbio, &p))
        var sent: UInt64 = 0, off = 0
        if n > 0, let p {
            let b = UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self)
            while off + TLS13RecordProtection.headerLength <= n {
                guard b[off] == 23 else { return nil }
                off += TLS13RecordProtection.headerLength + (Int(b[off + 3]) << 8 | Int(b[off + 4]))
                sent += 1
            }
            guard off == n else { return nil }
        }
        guard let keys = TLS13RecordProtection(suite: suite, readSecret: clientSecret, writeSecret: serverSecret,
                                               writeSequence: sent) else { return nil }
        var rest = ByteQueue()
        let pending = Int(BIO_ctrl_pending(rbio))
        if pending > 0 {
            rest.reserve(pending)
            let got = BIO_read(rbio, rest.writableTail.baseAddress, Int32(pending))
            guard got == Int32(pending) else { rest.release(); return nil }
            rest.commit(pending)
        }
        records = keys
        return rest
    }

    func receive(_ c: TCPConnection, _ bytes: UnsafeRawBufferPointer) {
        guard !released else { return }
        if records != nil { receiveRecords(c, bytes); return }
        guard let ssl, let rbio else { return }
        ERR_clear_error()
        _ = BIO_write(rbio, bytes.baseAddress, Int32(bytes.count))
        if !handshakeDone {
            handshake(c)
            if !handshakeDone || released { return }
            if records != nil { receiveRecords(c, UnsafeRawBufferPointer(start: nil, count: 0)); return }
        }
        // `bytes` (the loop's read buffer) is consumed: reuse it for plaintext.
        let buf = c.loop.readBuffer
        while !released {
            let n = SSL_read(ssl, buf.baseAddress, Int32(buf.count))
            if n > 0 {
                c.deliver(UnsafeRawBufferPointer(rebasing: buf[0..<Int(n)]))
                continue
            }
            switch SSL_get_error(ssl, n) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                flushOutput(c)
            case SSL_ERROR_ZERO_RETURN:
                flushOutput(c)
                c.layerPeerClosed() // close_notify: the TLS stream ended
            default:
                fail(c, "read")
            }
            return
        }
    }

    // MARK: Records after the take-over

    private func receiveRecords(_ c: TCPConnection, _ bytes: UnsafeRawBufferPointer) {
        guard !peerClosed else { return } // RFC 8446 §6.1: data after close_notify is ignored
        if partial.isEmpty {
            guard let used = openRecords(c, bytes) else { return }
            if used < bytes.count { partial.append(UnsafeRawBufferPointer(rebasing: bytes[used...])) }
        } else {
            partial.append(bytes)
            guard let used = openRecords(c, partial.readable) else { return }
            partial.consume(used)
            if partial.isEmpty { partial.release() }
        }
    }

    /// Opens and hands on the whole records at the start of `data`; the
    /// bytes used, or nil when the connection ended or failed meanwhile
    /// (then `data` may be freed and must not be touched).
    private func openRecords(_ c: TCPConnection, _ data: UnsafeRawBufferPointer) -> Int? {
        let cipher = c.loop.tls13Cipher
        var off = 0
        while !released, !peerClosed {
            let rest = UnsafeRawBufferPointer(rebasing: data[off...])
            let opened: (type: UInt8, count: Int)
            do throws(TLS13RecordError) {
                guard let length = try TLS13RecordProtection.recordLength(rest) else { return off }
                opened = try records!.open(UnsafeRawBufferPointer(rebasing: rest[0..<length]),
                                           into: cipher.readScratch, cipher: cipher)
                off += length
            } catch {
                refuse(c, error)
                return nil
            }
            let content = UnsafeRawBufferPointer(start: cipher.readScratch, count: opened.count)
            switch opened.type {
            case 23: // application_data
                if opened.count > 0 { c.deliver(content) }
            case 21: // alert
                guard opened.count == 2 else {
                    refuse(c, TLS13RecordError(alert: TLS13RecordError.decodeError, reason: "alert of \(opened.count) bytes"))
                    return nil
                }
                switch content[1] {
                case 0: // close_notify: the TLS stream ended
                    peerClosed = true
                    partial.release()
                    c.layerPeerClosed()
                    return nil
                case 90: break // user_canceled: a close_notify follows
                default:
                    TCPMetrics.shared.tlsRefused.inc()
                    c.fail(.tls("peer sent alert \(content[1])"))
                    return nil
                }
            case 22: // handshake: KeyUpdate, or a message a client may not send now
                let what = content.first == 24 ? "KeyUpdate" : "post-handshake message \(content.first ?? 0)"
                refuse(c, TLS13RecordError(alert: TLS13RecordError.unexpectedMessage,
                                           reason: "\(what) refused (Parley's record layer does not update keys)"))
                return nil
            default:
                refuse(c, TLS13RecordError(alert: TLS13RecordError.unexpectedMessage,
                                           reason: "inner content type \(opened.type)"))
                return nil
            }
        }
        return nil
    }

    /// Sends a fatal alert (when it can still be sealed) and closes.
    private func refuse(_ c: TCPConnection, _ error: TLS13RecordError) {
        TCPMetrics.shared.tlsRefused.inc()
        sealAlert(c, level: 2, error.alert)
        if !released { c.fail(.tls(error.reason)) }
    }

    private func sealAlert(_ c: TCPConnection, level: UInt8, _ description: UInt8) {
        guard !released, !closed, records != nil else { return }
        let cipher = c.loop.tls13Cipher
        var alert = (level, description)
        let n = withUnsafeBytes(of: &alert) { records!.seal(type: 21, $0, into: cipher.writeScratch, cipher: cipher) }
        if let n { c.transmit(UnsafeRawBufferPointer(start: cipher.writeScratch, count: n)) }
    }

    private func sendRecords(_ c: TCPConnection, _ bytes: UnsafeRawBufferPointer) {
        let cipher = c.loop.tls13Cipher
        let room = TLS13Cipher.writeScratchLength
        var off = 0
        while off < bytes.count {
            var used = 0
            while off < bytes.count && used + TLS13RecordProtection.maxPlaintext + 22 <= room {
                let n = min(TLS13RecordProtection.maxPlaintext, bytes.count - off)
                guard let sealed = records!.seal(type: 23, UnsafeRawBufferPointer(rebasing: bytes[off..<off + n]),
                                                into: cipher.writeScratch + used, cipher: cipher) else {
                    if used > 0 { c.transmit(UnsafeRawBufferPointer(start: cipher.writeScratch, count: used)) }
                    if !released { c.fail(.tls("write key usage limit reached (\(TLS13RecordProtection.maxWriteRecords) records)")) }
                    return
                }
                used += sealed
                off += n
            }
            c.transmit(UnsafeRawBufferPointer(start: cipher.writeScratch, count: used))
            if released { return }
        }
    }

    func send(_ c: TCPConnection, _ bytes: UnsafeRawBufferPointer) {
        guard !released, !closed, bytes.count > 0 else { return }
        if !handshakeDone {
            pendingPlaintext.append(bytes)
            return
        }
        if records != nil { sendRecords(c, bytes); return }
        guard let ssl else { return }
        ERR_clear_error()
        var off = 0
        while off < bytes.count {
            let n = SSL_write(ssl, bytes.baseAddress! + off, Int32(min(bytes.count - off, 1 << 20)))
            if n <= 0 { fail(c, "write"); return }
            off += Int(n)
        }
        flushOutput(c)
    }

    func close(_ c: TCPConnection) {
        guard !released, !closed else { return }
        guard handshakeDone else { closed = true; return }
        if records != nil {
            sealAlert(c, level: 1, 0) // close_notify; we do not wait for the peer's
            closed = true
            return
        }
        closed = true
        guard let ssl else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl) // queues close_notify; we do not wait for the peer's
        flushOutput(c)
    }
}

/// Self-signed certificates for `parley serve` when no certificate is configured.
public enum TLSCertificate {
    /// Files written by ``generateSelfSigned(directory:commonName:subjectAltNames:days:)``.
    public struct Generated: Sendable {
        public let certificateFile: String
        public let privateKeyFile: String
        /// SHA-256 of the DER certificate, as `"AB:CD:…"` (what
        /// `openssl x509 -fingerprint -sha256` prints after the `=`).
        public let sha256Fingerprint: String
    }

    /// Generates an EC P-256 key and a self-signed X.509 v3 certificate
    /// (SHA-256 signature, SAN from `subjectAltNames`, e.g.
    /// `["DNS:localhost", "IP:127.0.0.1"]`) and writes `cert.pem` and
    /// `key.pem` (mode 0600) into `directory`, creating it if needed.
    public static func generateSelfSigned(directory: String, commonName: String = "localhost",
                                          subjectAltNames: [String] = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"],
                                          days: Int = 365) throws(TLSError) -> Generated {
        ERR_clear_error()
        mkdir(directory, 0o700)
        // Key: EC P-256.
        guard let kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw TLSError.fromQueue("EVP_PKEY_CTX_new_id") }
        defer { EVP_PKEY_CTX_free(kctx) }
        var pkey: OpaquePointer?
        guard EVP_PKEY_keygen_init(kctx) == 1,
              EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx, NID_X9_62_prime256v1) == 1,
              EVP_PKEY_keygen(kctx, &pkey) == 1, let key = pkey else { throw TLSError.fromQueue("EC key generation") }
        defer { EVP_PKEY_free(key) }

        guard let x = X509_new() else { throw TLSError.fromQueue("X509_new") }
        defer { X509_free(x) }
        var serial = [UInt8](repeating: 0, count: 16)
        _ = RAND_bytes(&serial, 16)
        serial[0] &= 0x7f // positive
        guard let bn = BN_bin2bn(serial, 16, nil) else { throw TLSError.fromQueue("serial") }
        defer { BN_free(bn) }
        _ = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))
        guard X509_set_version(x, 2) == 1,
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) != nil,
              X509_gmtime_adj(X509_getm_notAfter(x), days * 86400) != nil,
              X509_set_pubkey(x, key) == 1 else { throw TLSError.fromQueue("certificate fields") }
        let name = X509_get_subject_name(x)
        guard X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0) == 1,
              X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, "Parley", -1, -1, 0) == 1,
              X509_set_issuer_name(x, name) == 1 else { throw TLSError.fromQueue("certificate name") }
        var v3 = X509V3_CTX()
        X509V3_set_ctx(&v3, x, x, nil, nil, 0)
        var exts: [(Int32, String)] = [(NID_basic_constraints, "critical,CA:FALSE"),
                                       (NID_key_usage, "critical,digitalSignature"),
                                       (NID_ext_key_usage, "serverAuth,clientAuth")]
        if !subjectAltNames.isEmpty { exts.append((NID_subject_alt_name, subjectAltNames.joined(separator: ","))) }
        for (nid, value) in exts {
            guard let ext = X509V3_EXT_conf_nid(nil, &v3, nid, value) else { throw TLSError.fromQueue("extension \(value)") }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(x, ext, -1) == 1 else { throw TLSError.fromQueue("X509_add_ext") }
        }
        guard X509_sign(x, key, EVP_sha256()) > 0 else { throw TLSError.fromQueue("X509_sign") }

        let certPath = directory + "/cert.pem", keyPath = directory + "/key.pem"
        // Key first, created 0600 so it is never readable by others.
        let kfd = open(keyPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard kfd >= 0, let kfile = fdopen(kfd, "w") else { throw TLSError("cannot create \(keyPath): \(String(cString: strerror(errno)))") }
        let kok = PEM_write_PrivateKey(kfile, key, nil, nil, 0, nil, nil)
        fclose(kfile)
        guard kok == 1 else { throw TLSError.fromQueue("writing \(keyPath)") }
        guard let cfile = fopen(certPath, "w") else { throw TLSError("cannot create \(certPath): \(String(cString: strerror(errno)))") }
        let cok = PEM_write_X509(cfile, x)
        fclose(cfile)
        guard cok == 1 else { throw TLSError.fromQueue("writing \(certPath)") }

        return Generated(certificateFile: certPath, privateKeyFile: keyPath, sha256Fingerprint: try fingerprint(x))
    }

    /// SHA-256 fingerprint (`"AB:CD:…"`) of the first certificate in a PEM file.
    public static func sha256Fingerprint(ofPEMFile path: String) throws(TLSError) -> String {
        ERR_clear_error()
        guard let f = fopen(path, "r") else { throw TLSError("cannot open \(path)") }
        defer { fclose(f) }
        guard let x = PEM_read_X509(f, nil, nil, nil) else { throw TLSError.fromQueue("reading \(path)") }
        defer { X509_free(x) }
        return try fingerprint(x)
    }

    /// `"AB:CD:…"` SHA-256 of a certificate's DER encoding.
    static func fingerprint(_ x: OpaquePointer) throws(TLSError) -> String {
        var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var mdLen: UInt32 = 0
        guard X509_digest(x, EVP_sha256(), &md, &mdLen) == 1 else { throw TLSError.fromQueue("X509_digest") }
        return Hex.encode(md.prefix(Int(mdLen)), uppercase: true, separator: UInt8(ascii: ":"))
    }
}
