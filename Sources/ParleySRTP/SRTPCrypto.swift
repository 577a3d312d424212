import COpenSSL

// The cryptographic primitives under SRTPContext, over OpenSSL 3's libcrypto
// (AES-NI, SHA-NI). Everything here is set up once per context; the packet
// path only resets IVs and copies precomputed hash states, so it allocates
// nothing.

// MARK: - Key derivation (RFC 3711 §4.3)

/// SRTP key derivation labels (RFC 3711 §4.3.2).
enum SRTPLabel: UInt8 {
    case rtpEncryption = 0, rtpAuthentication = 1, rtpSalt = 2
    case rtcpEncryption = 3, rtcpAuthentication = 4, rtcpSalt = 5
}

/// The AES-CM PRF of RFC 3711 §4.3.3 with key_derivation_rate 0 (r = 0):
/// x = (label ‖ 0⁴⁸) XOR master salt, right-aligned in 112 bits; the session
/// key is the AES-CM keystream from IV = x · 2¹⁶. RFC 7714 §11 uses the
/// same PRF for AEAD_AES_128_GCM with its 96-bit salt (libsrtp zero-pads it
/// to 112 bits; so does the zero-filled IV here).
func srtpDeriveKey(masterKey: [UInt8], masterSalt: [UInt8], label: SRTPLabel, length: Int) throws(SRTPError) -> [UInt8] {
    precondition(masterKey.count == 16 && masterSalt.count <= 14 && length <= 32)
    if length == 0 { return [] }
    var iv = [UInt8](repeating: 0, count: 16)
    for i in 0..<masterSalt.count { iv[i] = masterSalt[i] }
    iv[7] ^= label.rawValue
    var out = [UInt8](repeating: 0, count: length)
    // AES-CM over zeros = the keystream itself.
    let keystream = try AESCMKeystream(key: masterKey)
    let ok = iv.withUnsafeBufferPointer { ivp in
        out.withUnsafeMutableBufferPointer { keystream.apply(iv: ivp.baseAddress!, $0.baseAddress!, length) }
    }
    guard ok else { throw .library(status: 0, function: "AES-CM PRF") }
    return out
}

/// The session keys of one SRTP cryptographic context (RFC 3711 §4.3):
/// encryption key, authentication key (AES-CM only) and salt for SRTP and SRTCP.
struct SRTPSessionKeys {
    var rtpKey: [UInt8], rtpAuthKey: [UInt8], rtpSalt: [UInt8]
    var rtcpKey: [UInt8], rtcpAuthKey: [UInt8], rtcpSalt: [UInt8]

    init(rtpKey: [UInt8], rtpAuthKey: [UInt8] = [], rtpSalt: [UInt8],
         rtcpKey: [UInt8], rtcpAuthKey: [UInt8] = [], rtcpSalt: [UInt8]) {
        (self.rtpKey, self.rtpAuthKey, self.rtpSalt) = (rtpKey, rtpAuthKey, rtpSalt)
        (self.rtcpKey, self.rtcpAuthKey, self.rtcpSalt) = (rtcpKey, rtcpAuthKey, rtcpSalt)
    }

    /// Derives all six from the master key and salt (labels 0…5; GCM needs no authentication keys).
    init(deriving m: SRTPKeyMaterial) throws(SRTPError) {
        func derive(_ label: SRTPLabel, _ n: Int) throws(SRTPError) -> [UInt8] {
            try srtpDeriveKey(masterKey: m.masterKey, masterSalt: m.masterSalt, label: label, length: n)
        }
        let authLength = m.suite == .aeadAES128GCM ? 0 : 20
        self.init(rtpKey: try derive(.rtpEncryption, 16), rtpAuthKey: try derive(.rtpAuthentication, authLength),
                  rtpSalt: try derive(.rtpSalt, m.suite.saltLength),
                  rtcpKey: try derive(.rtcpEncryption, 16), rtcpAuthKey: try derive(.rtcpAuthentication, authLength),
                  rtcpSalt: try derive(.rtcpSalt, m.suite.saltLength))
    }

    /// Overwrites the keys in place once the context holds its own copies
    /// (EVP contexts and HMAC pad states, which are cleansed when freed).
    mutating func wipe() {
        for i in rtpKey.indices { rtpKey[i] = 0 }
        for i in rtpAuthKey.indices { rtpAuthKey[i] = 0 }
        for i in rtpSalt.indices { rtpSalt[i] = 0 }
        for i in rtcpKey.indices { rtcpKey[i] = 0 }
        for i in rtcpAuthKey.indices { rtcpAuthKey[i] = 0 }
        for i in rtcpSalt.indices { rtcpSalt[i] = 0 }
    }
}

// MARK: - AES-GCM with a preallocated EVP context

/// One keyed EVP AES-128-GCM context; the packet path only sets a new IV on
/// it (`EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, enc)`, which allocates nothing).
final class AESGCMCipher {
    let ctx: OpaquePointer

    init(key: [UInt8], encrypt: Bool) throws(SRTPError) {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw .library(status: 0, function: "EVP_CIPHER_CTX_new") }
        self.ctx = ctx
        let ok = key.withUnsafeBufferPointer {
            EVP_CipherInit_ex(ctx, EVP_aes_128_gcm(), nil, $0.baseAddress, nil, encrypt ? 1 : 0)
        }
        guard ok == 1 else { throw .library(status: ok, function: "EVP_CipherInit_ex") }
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }

    /// AES-GCM seal in place: `aad` (one or two pieces), `data` encrypted,
    /// the 16-byte tag written to `tag`.
    @inline(__always)
    func seal(iv: UnsafePointer<UInt8>, aad: UnsafePointer<UInt8>, _ aadCount: Int,
              aad2: UnsafePointer<UInt8>?, _ aad2Count: Int,
              _ data: UnsafeMutablePointer<UInt8>, _ count: Int, tag: UnsafeMutablePointer<UInt8>) -> Bool {
        run(encrypt: true, iv: iv, aad, aadCount, aad2, aad2Count, data, count, tag)
    }

    /// AES-GCM open in place: false when the tag does not verify (the
    /// decrypted bytes are then garbage and the packet must be dropped).
    @inline(__always)
    func open(iv: UnsafePointer<UInt8>, aad: UnsafePointer<UInt8>, _ aadCount: Int,
              aad2: UnsafePointer<UInt8>?, _ aad2Count: Int,
              _ data: UnsafeMutablePointer<UInt8>, _ count: Int, tag: UnsafeMutablePointer<UInt8>) -> Bool {
        run(encrypt: false, iv: iv, aad, aadCount, aad2, aad2Count, data, count, tag)
    }

    @inline(__always)
    private func run(encrypt: Bool, iv: UnsafePointer<UInt8>, _ aad: UnsafePointer<UInt8>, _ aadCount: Int,
                     _ aad2: UnsafePointer<UInt8>?, _ aad2Count: Int,
                     _ data: UnsafeMutablePointer<UInt8>, _ count: Int, _ tag: UnsafeMutablePointer<UInt8>) -> Bool {
        var n: Int32 = 0
        guard EVP_CipherInit_ex(ctx, nil, nil, nil, iv, encrypt ? 1 : 0) == 1,
              EVP_CipherUpdate(ctx, nil, &n, aad, Int32(aadCount)) == 1 else { return false }
        if let aad2, aad2Count > 0, EVP_CipherUpdate(ctx, nil, &n, aad2, Int32(aad2Count)) != 1 { return false }
        if count > 0, EVP_CipherUpdate(ctx, data, &n, data, Int32(count)) != 1 { return false }
        if encrypt {
            // GCM has no final block: Final writes nothing to `tag`; GET_TAG then does.
            return EVP_CipherFinal_ex(ctx, tag, &n) == 1 && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1
        }
        // Final compares the expected tag in constant time (CRYPTO_memcmp inside OpenSSL).
        return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 && EVP_CipherFinal_ex(ctx, tag, &n) == 1
    }
}

// MARK: - AES-CM keystream from AES-ECB

/// AES in counter mode as SRTP uses it (RFC 3711 §4.1.1): block j of the
/// keystream is AES_k(IV + j), with the IV's low 16 bits zero so j simply
/// fills them. Measured with OpenSSL 3.0 on this machine, re-setting the IV
/// of an EVP CTR context costs more than encrypting a 188-byte payload
/// (`EVP_CipherInit_ex` looks parameters up by name), so the counter blocks
/// are built here and encrypted with one keyed ECB context that is never
/// re-initialised, in chunks through a preallocated scratch buffer.
final class AESCMKeystream {
    private let ctx: OpaquePointer
    private let blocks: UnsafeMutablePointer<UInt8>
    static let chunk = 512

    init(key: [UInt8]) throws(SRTPError) {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw .library(status: 0, function: "EVP_CIPHER_CTX_new") }
        self.ctx = ctx
        blocks = .allocate(capacity: Self.chunk)
        blocks.initialize(repeating: 0, count: Self.chunk)
        let ok = key.withUnsafeBufferPointer { EVP_CipherInit_ex(ctx, EVP_aes_128_ecb(), nil, $0.baseAddress, nil, 1) }
        guard ok == 1, EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 else { throw .library(status: ok, function: "EVP_CipherInit_ex") }
    }

    deinit {
        EVP_CIPHER_CTX_free(ctx)
        OPENSSL_cleanse(blocks, Self.chunk)
        blocks.deallocate()
    }

    /// XORs the keystream from `iv` (16 bytes, low 16 bits zero) into
    /// `data[0..<count]`; at most 2¹⁶ blocks (1 MiB), far above a datagram.
    @inline(__always)
    func apply(iv: UnsafePointer<UInt8>, _ data: UnsafeMutablePointer<UInt8>, _ count: Int) -> Bool {
        let raw = UnsafeRawPointer(iv)
        let high = raw.loadUnaligned(as: UInt64.self)
        let low = raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self) & 0x0000_FFFF_FFFF_FFFF
        let out = UnsafeMutableRawPointer(blocks)
        var j: UInt16 = 0
        var done = 0
        while done < count {
            let n = min(Self.chunk, count - done)
            let nBlocks = (n + 15) >> 4
            for b in 0..<nBlocks {
                // Bytes 14 and 15 of the block hold j big-endian (little-endian loads: bits 48…63).
                out.storeBytes(of: high, toByteOffset: b << 4, as: UInt64.self)
                out.storeBytes(of: low | UInt64(j.byteSwapped) << 48, toByteOffset: b << 4 + 8, as: UInt64.self)
                j &+= 1
            }
            var written: Int32 = 0
            guard EVP_CipherUpdate(ctx, blocks, &written, blocks, Int32(nBlocks << 4)) == 1 else { return false }
            let d = UnsafeMutableRawPointer(data + done)
            var i = 0
            while i + 8 <= n {
                d.storeBytes(of: d.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                             ^ out.load(fromByteOffset: i, as: UInt64.self), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < n {
                data[done + i] ^= blocks[i]
                i += 1
            }
            done += n
        }
        return true
    }
}

// MARK: - HMAC-SHA1 with precomputed pads

/// The low-level SHA-1 block functions. OpenSSL 3 marks them deprecated in
/// favour of EVP, but measured on this machine (tools/bench/srtp) every EVP
/// route to a keyed HMAC re-use allocates: EVP_MAC_init reinit 2 mallocs,
/// EVP_MD_CTX_copy_ex 2, EVP_MAC_CTX_dup 11 per packet. Copying a
/// precomputed SHA_CTX (inner and outer pad already absorbed) allocates
/// nothing and is the fastest. The functions remain exported by libcrypto 3.x.
/// They are reached through this protocol so that the deprecation warning
/// stays in one place (a deprecated witness of a non-deprecated requirement).
protocol SHA1BlockFunctions {
    static func initialize(_ c: UnsafeMutablePointer<SHA_CTX>)
    static func update(_ c: UnsafeMutablePointer<SHA_CTX>, _ data: UnsafeRawPointer, _ count: Int)
    static func finish(_ c: UnsafeMutablePointer<SHA_CTX>, _ digest: UnsafeMutablePointer<UInt8>)
}

enum LibcryptoSHA1 {}

extension LibcryptoSHA1: SHA1BlockFunctions {
    @available(*, deprecated, message: "OpenSSL 3 low-level SHA-1; see SHA1BlockFunctions")
    @inline(__always) static func initialize(_ c: UnsafeMutablePointer<SHA_CTX>) { _ = SHA1_Init(c) }
    @available(*, deprecated, message: "OpenSSL 3 low-level SHA-1; see SHA1BlockFunctions")
    @inline(__always) static func update(_ c: UnsafeMutablePointer<SHA_CTX>, _ data: UnsafeRawPointer, _ count: Int) {
        _ = SHA1_Update(c, data, count)
    }
    @available(*, deprecated, message: "OpenSSL 3 low-level SHA-1; see SHA1BlockFunctions")
    @inline(__always) static func finish(_ c: UnsafeMutablePointer<SHA_CTX>, _ digest: UnsafeMutablePointer<UInt8>) {
        _ = SHA1_Final(digest, c)
    }
}

/// HMAC-SHA1 (RFC 2104) keyed once: the inner and outer pad blocks are
/// hashed at setup; per message the saved states are copied (a 96-byte struct).
struct HMACSHA1<SHA: SHA1BlockFunctions> {
    /// [inner, outer, work] hash states, allocated once.
    private let states: UnsafeMutablePointer<SHA_CTX>

    init(key: [UInt8]) {
        precondition(key.count <= 64)
        states = .allocate(capacity: 3)
        states.initialize(repeating: SHA_CTX(), count: 3)
        var pad = [UInt8](repeating: 0x36, count: 64)
        for i in 0..<key.count { pad[i] ^= key[i] }
        SHA.initialize(states)
        pad.withUnsafeBytes { SHA.update(states, $0.baseAddress!, 64) }
        for i in 0..<64 { pad[i] ^= 0x36 ^ 0x5C }
        SHA.initialize(states + 1)
        pad.withUnsafeBytes { SHA.update(states + 1, $0.baseAddress!, 64) }
        for i in 0..<64 { pad[i] = 0 }
    }

    func destroy() {
        OPENSSL_cleanse(states, 3 * MemoryLayout<SHA_CTX>.size)
        states.deallocate()
    }

    /// HMAC over `data[0..<count] ‖ trailer[0..<trailerCount]` into `digest` (20 bytes).
    @inline(__always)
    func mac(_ data: UnsafeRawPointer, _ count: Int, trailer: UnsafeRawPointer, _ trailerCount: Int,
             into digest: UnsafeMutablePointer<UInt8>) {
        let work = states + 2
        work.pointee = states.pointee
        SHA.update(work, data, count)
        if trailerCount > 0 { SHA.update(work, trailer, trailerCount) }
        SHA.finish(work, digest)
        work.pointee = states[1]
        SHA.update(work, digest, 20)
        SHA.finish(work, digest)
    }
}
