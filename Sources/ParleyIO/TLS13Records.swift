import COpenSSL

/// Why a TLS 1.3 record was refused: the alert to send (RFC 8446 §6) and a
/// reason for the close.
struct TLS13RecordError: Error, Equatable {
    static let unexpectedMessage: UInt8 = 10, badRecordMAC: UInt8 = 20, recordOverflow: UInt8 = 22
    static let decodeError: UInt8 = 50, internalError: UInt8 = 80
    let alert: UInt8
    let reason: String
}

/// TLS 1.3 record protection (RFC 8446 §5.2–5.3) for a connection whose
/// handshake OpenSSL finished: only the traffic keys, IVs and sequence
/// numbers, about 150 bytes, instead of an `SSL` object (about 14 KB after a
/// handshake, buffers released). The AEAD runs on the loop's shared
/// ``TLS13Cipher``, keyed again for each record.
///
/// Refused, with the alert RFC 8446 names: a record that is not
/// `application_data` on the outside, longer than 2^14 + 256 bytes, shorter
/// than a tag, whose tag does not verify (the sequence number is part of
/// the nonce, so a replayed, reordered or dropped record fails here too), or
/// whose inner plaintext is over 2^14 bytes or all padding.
struct TLS13RecordProtection {
    /// The TLS 1.3 cipher suites taken over (`TLS_AES_128_CCM_*` stay with OpenSSL).
    enum Suite: UInt16 {
        case aes128GCM = 0x1301, aes256GCM = 0x1302, chacha20Poly1305 = 0x1303
        var keyLength: Int { self == .aes128GCM ? 16 : 32 }
        var secretLength: Int { self == .aes256GCM ? 48 : 32 }
    }

    static let headerLength = 5, tagLength = 16, ivLength = 12
    /// Most plaintext in one record (2^14).
    static let maxPlaintext = 16_384
    /// Most a record's ciphertext may be (2^14 + 256), header not included.
    static let maxCiphertext = 16_384 + 256
    /// Records sealed under one write key; then the connection is closed.
    /// RFC 8446 §5.5 allows 2^24.5 full-size records for AES-GCM; Parley
    /// sends no KeyUpdate, so a connection ends below that.
    static let maxWriteRecords: UInt64 = 1 << 24

    let suite: Suite
    /// read key | read IV | write key | write IV
    private var material: [UInt8]
    private(set) var readSequence: UInt64 = 0
    private(set) var writeSequence: UInt64

    /// Keys from the two application traffic secrets (RFC 8446 §7.3).
    /// `writeSequence`: records already sealed under the write key (the
    /// NewSessionTickets OpenSSL sent).
    init?(suite: Suite, readSecret: [UInt8], writeSecret: [UInt8], writeSequence: UInt64 = 0) {
        guard readSecret.count == suite.secretLength, writeSecret.count == suite.secretLength else { return nil }
        let sha384 = suite == .aes256GCM
        guard let rk = Self.hkdfExpandLabel(secret: readSecret, label: "key", length: suite.keyLength, sha384: sha384),
              let ri = Self.hkdfExpandLabel(secret: readSecret, label: "iv", length: Self.ivLength, sha384: sha384),
              let wk = Self.hkdfExpandLabel(secret: writeSecret, label: "key", length: suite.keyLength, sha384: sha384),
              let wi = Self.hkdfExpandLabel(secret: writeSecret, label: "iv", length: Self.ivLength, sha384: sha384)
        else { return nil }
        self.suite = suite
        material = rk + ri + wk + wi
        self.writeSequence = writeSequence
    }

    /// Overwrites the keys.
    mutating func wipe() {
        for i in material.indices { material[i] = 0 }
    }

    /// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, for
    /// lengths up to the hash's (one HMAC block, RFC 5869 §2.3).
    static func hkdfExpandLabel(secret: [UInt8], label: String, context: [UInt8] = [], length: Int, sha384: Bool) -> [UInt8]? {
        let full = Array("tls13 ".utf8) + Array(label.utf8)
        guard length <= (sha384 ? 48 : 32), full.count <= 255, context.count <= 255 else { return nil }
        let info = [UInt8(length >> 8), UInt8(length & 0xff), UInt8(full.count)] + full + [UInt8(context.count)] + context + [1]
        var out = [UInt8](repeating: 0, count: 64)
        var outLength: UInt32 = 0
        let ok = secret.withUnsafeBufferPointer { s in
            info.withUnsafeBufferPointer { i in
                HMAC(sha384 ? EVP_sha384() : EVP_sha256(), s.baseAddress, Int32(s.count), i.baseAddress, i.count,
                     &out, &outLength)
            }
        }
        guard ok != nil else { return nil }
        return Array(out.prefix(length))
    }

    /// The length of the whole record (header included) at the start of
    /// `bytes`, or nil when its header or body has not all arrived.
    static func recordLength(_ bytes: UnsafeRawBufferPointer) throws(TLS13RecordError) -> Int? {
        guard bytes.count >= headerLength else { return nil }
        let type = bytes[0]
        guard type == 23 else {
            throw TLS13RecordError(alert: TLS13RecordError.unexpectedMessage,
                                   reason: "record of type \(type) after the handshake (only application_data is allowed)")
        }
        let length = Int(bytes[3]) << 8 | Int(bytes[4])
        guard length <= maxCiphertext else {
            throw TLS13RecordError(alert: TLS13RecordError.recordOverflow, reason: "record of \(length) bytes (at most \(maxCiphertext))")
        }
        guard length > tagLength else {
            throw TLS13RecordError(alert: TLS13RecordError.decodeError, reason: "record of \(length) bytes is shorter than its tag")
        }
        return bytes.count >= headerLength + length ? headerLength + length : nil
    }

    /// Opens one whole record (as ``recordLength(_:)`` measured it) into
    /// `out` (room for ``maxCiphertext`` bytes): its inner content type and
    /// the content's length at the start of `out`.
    mutating func open(_ record: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer,
                       cipher: TLS13Cipher) throws(TLS13RecordError) -> (type: UInt8, count: Int) {
        let body = record.count - Self.headerLength - Self.tagLength
        guard readSequence < UInt64.max else {
            throw TLS13RecordError(alert: TLS13RecordError.internalError, reason: "read sequence number exhausted")
        }
        let ok = material.withUnsafeBufferPointer { m in
            withNonce(m.baseAddress! + suite.keyLength, readSequence) { nonce in
                cipher.run(suite, encrypt: false, key: m.baseAddress!, nonce: nonce,
                           aad: record.baseAddress!.assumingMemoryBound(to: UInt8.self),
                           input: record.baseAddress!.assumingMemoryBound(to: UInt8.self) + Self.headerLength,
                           output: out.assumingMemoryBound(to: UInt8.self), count: body,
                           tag: UnsafeMutablePointer(mutating: record.baseAddress!.assumingMemoryBound(to: UInt8.self)
                                                     + Self.headerLength + body))
            }
        }
        guard ok else { throw TLS13RecordError(alert: TLS13RecordError.badRecordMAC, reason: "record authentication failed") }
        readSequence += 1
        // TLSInnerPlaintext: content | type | zeros
        let p = out.assumingMemoryBound(to: UInt8.self)
        var i = body - 1
        while i >= 0 && p[i] == 0 { i -= 1 }
        guard i >= 0 else {
            throw TLS13RecordError(alert: TLS13RecordError.unexpectedMessage, reason: "record without a content type (all padding)")
        }
        guard i <= Self.maxPlaintext else {
            throw TLS13RecordError(alert: TLS13RecordError.recordOverflow, reason: "record plaintext of \(i) bytes (at most \(Self.maxPlaintext))")
        }
        return (p[i], i)
    }

    /// Seals `plaintext` (at most ``maxPlaintext`` bytes) as one record of
    /// inner content `type` into `out`, which needs room for the plaintext
    /// plus 22 bytes. The record's length, or nil when the write key has
    /// sealed ``maxWriteRecords`` records or the cipher failed.
    mutating func seal(type: UInt8, _ plaintext: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer,
                       cipher: TLS13Cipher) -> Int? {
        precondition(plaintext.count <= Self.maxPlaintext)
        guard writeSequence < Self.maxWriteRecords else { return nil }
        let inner = plaintext.count + 1
        let length = inner + Self.tagLength
        let o = out.assumingMemoryBound(to: UInt8.self)
        o[0] = 23; o[1] = 3; o[2] = 3; o[3] = UInt8(length >> 8); o[4] = UInt8(length & 0xff)
        if plaintext.count > 0 { (out + Self.headerLength).copyMemory(from: plaintext.baseAddress!, byteCount: plaintext.count) }
        o[Self.headerLength + plaintext.count] = type
        let ok = material.withUnsafeBufferPointer { m in
            let key = m.baseAddress! + suite.keyLength + Self.ivLength
            return withNonce(key + suite.keyLength, writeSequence) { nonce in
                cipher.run(suite, encrypt: true, key: key, nonce: nonce, aad: o,
                           input: o + Self.headerLength, output: o + Self.headerLength, count: inner,
                           tag: o + Self.headerLength + inner)
            }
        }
        guard ok else { return nil }
        writeSequence += 1
        return Self.headerLength + length
    }

    /// The per-record nonce: the IV XOR the 64-bit sequence number, right-aligned (RFC 8446 §5.3).
    private func withNonce<R>(_ iv: UnsafePointer<UInt8>, _ sequence: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
        var nonce: (UInt64, UInt32) = (0, 0) // 12 bytes
        return withUnsafeMutableBytes(of: &nonce) { raw in
            let n = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            for i in 0..<Self.ivLength { n[i] = iv[i] }
            for i in 0..<8 { n[Self.ivLength - 1 - i] ^= UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(i))) }
            return body(n)
        }
    }
}

/// One loop's AEAD context and record buffers, shared by every connection
/// whose records Parley protects on that loop (so a connection keeps no
/// cipher state of its own). Loop-bound.
final class TLS13Cipher {
    private let ctx: OpaquePointer
    private var keyedFor: TLS13RecordProtection.Suite?
    /// Plaintext of one opened record.
    let readScratch: UnsafeMutableRawPointer
    /// Sealed records before they go to the socket (four full ones).
    let writeScratch: UnsafeMutableRawPointer
    static let writeScratchLength = 4 * (TLS13RecordProtection.maxPlaintext + 22)

    nonisolated(unsafe) private static let ciphers: [OpaquePointer?] = [
        EVP_CIPHER_fetch(nil, "AES-128-GCM", nil), EVP_CIPHER_fetch(nil, "AES-256-GCM", nil),
        EVP_CIPHER_fetch(nil, "ChaCha20-Poly1305", nil),
    ]

    init() {
        guard let c = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new: out of memory") }
        ctx = c
        readScratch = .allocate(byteCount: TLS13RecordProtection.maxCiphertext, alignment: 16)
        writeScratch = .allocate(byteCount: Self.writeScratchLength, alignment: 16)
    }

    deinit {
        EVP_CIPHER_CTX_free(ctx)
        readScratch.deallocate()
        writeScratch.deallocate()
    }

    /// AEAD with a 5-byte AAD; `input` and `output` may be the same. Opening
    /// checks `tag` (in constant time, inside OpenSSL); sealing writes it.
    func run(_ suite: TLS13RecordProtection.Suite, encrypt: Bool, key: UnsafePointer<UInt8>, nonce: UnsafePointer<UInt8>,
             aad: UnsafePointer<UInt8>, input: UnsafePointer<UInt8>, output: UnsafeMutablePointer<UInt8>, count: Int,
             tag: UnsafeMutablePointer<UInt8>) -> Bool {
        let index = suite == .aes128GCM ? 0 : suite == .aes256GCM ? 1 : 2
        // The same algorithm again: only key and nonce change (no allocation).
        let cipher = keyedFor == suite ? nil : Self.ciphers[index]
        if keyedFor != suite && cipher == nil { return false }
        keyedFor = nil
        guard EVP_CipherInit_ex2(ctx, cipher, key, nonce, encrypt ? 1 : 0, nil) == 1 else { return false }
        keyedFor = suite
        var n: Int32 = 0
        guard EVP_CipherUpdate(ctx, nil, &n, aad, Int32(TLS13RecordProtection.headerLength)) == 1 else { return false }
        if count > 0, EVP_CipherUpdate(ctx, output, &n, input, Int32(count)) != 1 { return false }
        if encrypt {
            return EVP_CipherFinal_ex(ctx, tag, &n) == 1
                && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, Int32(TLS13RecordProtection.tagLength), tag) == 1
        }
        var scratch = (UInt64(0), UInt64(0))
        return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, Int32(TLS13RecordProtection.tagLength), tag) == 1
            && withUnsafeMutableBytes(of: &scratch) { EVP_CipherFinal_ex(ctx, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &n) } == 1
    }
}

extension EventLoop {
    /// The loop's ``TLS13Cipher``, made on first use. Loop only.
    var tls13Cipher: TLS13Cipher {
        if let c = tls13CipherStorage as? TLS13Cipher { return c }
        let c = TLS13Cipher()
        tls13CipherStorage = c
        return c
    }
}
