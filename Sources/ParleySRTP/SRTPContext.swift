import COpenSSL

/// Errors from SRTP key handling and packet processing.
public enum SRTPError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The packet's authentication tag did not verify (wrong key, forged or corrupted packet).
    case authenticationFailed
    /// The packet index was already seen or is older than the replay window
    /// (outbound: the index was already protected, see `allowRetransmit`).
    case replayed
    /// The buffer has less spare capacity than the suite's overhead.
    case bufferTooSmall(needed: Int, available: Int)
    /// Too short, not RTP/RTCP version 2, or a header longer than the packet.
    case malformedPacket
    /// Wrong key/salt length, bad base64, unsupported suite or parameter.
    case invalidKeyMaterial(String)
    /// A libcrypto call failed (its return value and name); not expected in practice.
    case library(status: Int32, function: String)

    public var description: String {
        switch self {
        case .authenticationFailed: return "SRTP authentication failed"
        case .replayed: return "SRTP replay check failed"
        case .bufferTooSmall(let n, let a): return "SRTP buffer needs \(n) spare bytes, has \(a)"
        case .malformedPacket: return "not an RTP/RTCP packet"
        case .invalidKeyMaterial(let why): return "invalid SRTP key material: \(why)"
        case .library(let s, let f): return "\(f) failed with status \(s)"
        }
    }
}

/// SRTP/SRTCP (RFC 3711, RFC 7714) for one direction of one participant's
/// media: `.outbound` contexts protect what we send, `.inbound` contexts
/// unprotect what we receive. One master key serves any number of SSRCs;
/// each SSRC gets its own rollover counter, highest index and replay window
/// (inbound: only once a packet of it authenticates).
///
/// The engine is Parley's own, over OpenSSL 3's libcrypto: AES-128-CTR and
/// AES-128-GCM through EVP cipher contexts keyed once, HMAC-SHA1 from
/// precomputed pad states. Packets are processed in place, in a
/// caller-provided buffer whose spare capacity covers the suite's overhead
/// (`SRTPSuite.maxOverhead` always does); nothing is allocated per packet
/// (a new SSRC may grow the stream table).
///
/// Threading: a context is not thread-safe. Use each one from one thread at
/// a time (in Parley, the event loop that owns the room); different contexts
/// may be used on different threads concurrently.
public final class SRTPContext {
    public enum Direction: Sendable {
        /// Protects packets we send (protectRTP / protectRTCP).
        case outbound
        /// Unprotects packets we receive (unprotectRTP / unprotectRTCP).
        case inbound
    }

    public let suite: SRTPSuite
    public let direction: Direction
    private let allowRetransmit: Bool
    private let tagLength: Int
    private let isGCM: Bool

    /// GCM only: keyed EVP AES-GCM contexts.
    private let rtpCipher: AESGCMCipher?
    private let rtcpCipher: AESGCMCipher?
    /// AES-CM only: keystream generators and HMAC-SHA1 (GCM authenticates inside the cipher).
    private let rtpKeystream: AESCMKeystream?
    private let rtcpKeystream: AESCMKeystream?
    private let rtpAuth: HMACSHA1<LibcryptoSHA1>?
    private let rtcpAuth: HMACSHA1<LibcryptoSHA1>?
    /// Session salts: RTP at 0, RTCP at 16 (14 bytes for AES-CM, 12 for GCM).
    private let salts: UnsafeMutablePointer<UInt8>
    /// Per-packet scratch: IV at 0 (16), digest at 16 (20), trailer at 40 (4).
    private let scratch: UnsafeMutablePointer<UInt8>
    /// Per-SSRC state, behind a pointer allocated once: mutating it through a
    /// class's stored `var` would cost a dynamic exclusivity check per access.
    private let table: UnsafeMutablePointer<SRTPStreamTable>
    /// A snapshot of the per-SSRC state (tests).
    var streams: SRTPStreamTable { table.pointee }

    /// Smallest fixed RTP header (RFC 3550 §5.1) and RTCP header (§6.4).
    static let rtpHeaderLength = 12
    static let rtcpHeaderLength = 8
    /// Largest packet handled: a UDP datagram cannot carry more.
    public static let maxPacketLength = 65_535

    /// - Parameters:
    ///   - replayWindow: RTP replay window in packets (64…32767; default 1024,
    ///     so reordered video and retransmissions within ~1 s stay acceptable).
    ///     The SRTCP window is 128 indices.
    ///   - allowRetransmit: outbound only; lets the same sequence number be
    ///     protected again (a NACK resend of the *identical* packet). Never
    ///     enable it for packets whose payload differs: it would reuse keystream.
    public convenience init(material: SRTPKeyMaterial, direction: Direction, replayWindow: Int = 1024,
                            allowRetransmit: Bool = false) throws(SRTPError) {
        var keys = try SRTPSessionKeys(deriving: material)
        defer { keys.wipe() }
        try self.init(suite: material.suite, keys: keys, direction: direction,
                      replayWindow: replayWindow, allowRetransmit: allowRetransmit)
    }

    /// A context from session keys directly (RFC test vectors give those).
    init(suite: SRTPSuite, keys: SRTPSessionKeys, direction: Direction, replayWindow: Int = 1024,
         allowRetransmit: Bool = false) throws(SRTPError) {
        guard (64..<0x8000).contains(replayWindow) else {
            throw .invalidKeyMaterial("replay window \(replayWindow) outside 64..<32768")
        }
        self.suite = suite
        self.direction = direction
        self.allowRetransmit = allowRetransmit
        tagLength = suite.tagLength
        isGCM = suite == .aeadAES128GCM
        let outbound = direction == .outbound
        rtpCipher = isGCM ? try AESGCMCipher(key: keys.rtpKey, encrypt: outbound) : nil
        rtcpCipher = isGCM ? try AESGCMCipher(key: keys.rtcpKey, encrypt: outbound) : nil
        rtpKeystream = isGCM ? nil : try AESCMKeystream(key: keys.rtpKey)
        rtcpKeystream = isGCM ? nil : try AESCMKeystream(key: keys.rtcpKey)
        rtpAuth = isGCM ? nil : HMACSHA1(key: keys.rtpAuthKey)
        rtcpAuth = isGCM ? nil : HMACSHA1(key: keys.rtcpAuthKey)
        salts = .allocate(capacity: 32)
        salts.initialize(repeating: 0, count: 32)
        for i in 0..<min(14, keys.rtpSalt.count) { salts[i] = keys.rtpSalt[i] }
        for i in 0..<min(14, keys.rtcpSalt.count) { salts[16 + i] = keys.rtcpSalt[i] }
        scratch = .allocate(capacity: 48)
        scratch.initialize(repeating: 0, count: 48)
        table = .allocate(capacity: 1)
        table.initialize(to: SRTPStreamTable(replayWindow: replayWindow))
    }

    deinit {
        rtpAuth?.destroy()
        rtcpAuth?.destroy()
        OPENSSL_cleanse(salts, 32)
        salts.deallocate()
        OPENSSL_cleanse(scratch, 48)
        scratch.deallocate()
        table.pointee.destroy()
        table.deinitialize(count: 1)
        table.deallocate()
    }

    // MARK: - Byte helpers

    @inline(__always)
    private static func be16(_ p: UnsafePointer<UInt8>) -> UInt16 { UInt16(p[0]) << 8 | UInt16(p[1]) }

    @inline(__always)
    private static func be32(_ p: UnsafePointer<UInt8>) -> UInt32 {
        UnsafeRawPointer(p).loadUnaligned(as: UInt32.self).bigEndian
    }

    @inline(__always)
    private static func store32(_ v: UInt32, _ p: UnsafeMutablePointer<UInt8>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v.bigEndian, as: UInt32.self)
    }

    @inline(__always)
    private static func xor32(_ v: UInt32, _ p: UnsafeMutablePointer<UInt8>) {
        let r = UnsafeMutableRawPointer(p)
        r.storeBytes(of: r.loadUnaligned(as: UInt32.self) ^ v.bigEndian, as: UInt32.self)
    }

    /// The RTP header length (fixed part, CSRCs, extension; RFC 3550 §5.1,
    /// §5.3.1), or nil when it does not fit in `limit` bytes.
    @inline(__always)
    private static func rtpHeaderLength(_ p: UnsafePointer<UInt8>, limit: Int) -> Int? {
        var n = 12 + Int(p[0] & 0x0F) * 4
        if p[0] & 0x10 != 0 {
            guard n + 4 <= limit else { return nil }
            n += 4 + Int(be16(p + n + 2)) * 4
        }
        return n <= limit ? n : nil
    }

    /// Checks the buffer and returns the packet's first byte pointer.
    @inline(__always)
    private func validate(_ buffer: UnsafeMutableRawBufferPointer, _ length: Int, _ expected: Direction, minLength: Int,
                          spare: Int) throws(SRTPError) -> UnsafeMutablePointer<UInt8> {
        precondition(direction == expected, "SRTPContext used in the other direction")
        guard length >= minLength, length <= min(buffer.count, Self.maxPacketLength), let base = buffer.baseAddress,
              base.load(as: UInt8.self) >> 6 == 2 else { throw .malformedPacket }
        guard buffer.count - length >= spare else { throw .bufferTooSmall(needed: spare, available: buffer.count - length) }
        return base.assumingMemoryBound(to: UInt8.self)
    }

    // MARK: - IVs

    /// RTP IV. AES-CM (RFC 3711 §4.1.1): salt·2¹⁶ ⊕ SSRC·2⁶⁴ ⊕ index·2¹⁶.
    /// GCM (RFC 7714 §8.1): salt ⊕ (00 00 ‖ SSRC ‖ ROC ‖ SEQ).
    @inline(__always)
    private func rtpIV(ssrc: UInt32, index: UInt64) -> UnsafeMutablePointer<UInt8> {
        let iv = scratch
        iv.update(from: salts, count: 16)
        let roc = UInt32(truncatingIfNeeded: index >> 16), seq = UInt16(truncatingIfNeeded: index)
        if isGCM {
            Self.xor32(ssrc, iv + 2)
            Self.xor32(roc, iv + 6)
            iv[10] ^= UInt8(seq >> 8)
            iv[11] ^= UInt8(truncatingIfNeeded: seq)
        } else {
            Self.xor32(ssrc, iv + 4)
            Self.xor32(roc, iv + 8)
            iv[12] ^= UInt8(seq >> 8)
            iv[13] ^= UInt8(truncatingIfNeeded: seq)
        }
        return iv
    }

    /// SRTCP IV: the same with the 31-bit SRTCP index (RFC 3711 §4.1.1, RFC 7714 §9.1).
    @inline(__always)
    private func rtcpIV(ssrc: UInt32, index: UInt32) -> UnsafeMutablePointer<UInt8> {
        let iv = scratch
        iv.update(from: salts + 16, count: 16)
        if isGCM {
            Self.xor32(ssrc, iv + 2)
            Self.xor32(index, iv + 8)
        } else {
            Self.xor32(ssrc, iv + 4)
            Self.xor32(index, iv + 10)
        }
        return iv
    }

    // MARK: - RTP and RTCP, in place

    /// Encrypts and authenticates the RTP packet in `buffer[0..<length]` in
    /// place; returns the new length (`length + suite.rtpOverhead`).
    public func protectRTP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        let p = try validate(buffer, length, .outbound, minLength: Self.rtpHeaderLength, spare: tagLength)
        guard let header = Self.rtpHeaderLength(p, limit: length) else { throw .malformedPacket }
        let ssrc = Self.be32(p + 8)
        let slot = table.pointee.find(ssrc) ?? table.pointee.insert(ssrc)
        let s = table.pointee.streams[slot]
        let index = SRTPStreamTable.estimateIndex(seq: Self.be16(p + 2), highest: s.rtpHighest, seen: s.rtpSeen)
        switch table.pointee.rtpCheck(slot, index) {
        case .fresh: break
        case .seen where allowRetransmit: break
        case .seen, .old: throw .replayed
        }
        let iv = rtpIV(ssrc: ssrc, index: index)
        if let auth = rtpAuth {
            guard rtpKeystream.unsafelyUnwrapped.apply(iv: iv, p + header, length - header) else {
                throw .library(status: 0, function: "AES-CM")
            }
            let roc = scratch + 40
            Self.store32(UInt32(truncatingIfNeeded: index >> 16), roc)
            auth.mac(p, length, trailer: roc, 4, into: scratch + 16)
            (p + length).update(from: scratch + 16, count: tagLength)
        } else {
            let gcm = rtpCipher.unsafelyUnwrapped
            guard gcm.seal(iv: iv, aad: p, header, aad2: nil, 0, p + header, length - header, tag: p + length) else {
                throw .library(status: 0, function: "AES-GCM seal")
            }
        }
        table.pointee.rtpRecord(slot, index)
        return length + tagLength
    }

    /// Verifies and decrypts the SRTP packet in `buffer[0..<length]` in
    /// place; returns the RTP length. Throws `.authenticationFailed` or
    /// `.replayed` for packets to drop. The replay check runs before any
    /// cryptography; the stream state moves only after authentication.
    public func unprotectRTP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        let p = try validate(buffer, length, .inbound, minLength: Self.rtpHeaderLength + tagLength, spare: 0)
        let end = length - tagLength
        guard let header = Self.rtpHeaderLength(p, limit: end) else { throw .malformedPacket }
        let ssrc = Self.be32(p + 8)
        let slot = table.pointee.find(ssrc)
        let seq = Self.be16(p + 2)
        let index: UInt64
        if let slot {
            let s = table.pointee.streams[slot]
            index = SRTPStreamTable.estimateIndex(seq: seq, highest: s.rtpHighest, seen: s.rtpSeen)
            guard table.pointee.rtpCheck(slot, index) == .fresh else { throw .replayed }
        } else {
            index = UInt64(seq)
        }
        if let auth = rtpAuth {
            let roc = scratch + 40
            Self.store32(UInt32(truncatingIfNeeded: index >> 16), roc)
            auth.mac(p, end, trailer: roc, 4, into: scratch + 16)
            guard CRYPTO_memcmp(scratch + 16, p + end, tagLength) == 0 else { throw .authenticationFailed }
            let iv = rtpIV(ssrc: ssrc, index: index)
            guard rtpKeystream.unsafelyUnwrapped.apply(iv: iv, p + header, end - header) else {
                throw .library(status: 0, function: "AES-CM")
            }
        } else {
            let iv = rtpIV(ssrc: ssrc, index: index)
            let gcm = rtpCipher.unsafelyUnwrapped
            guard gcm.open(iv: iv, aad: p, header, aad2: nil, 0, p + header, end - header, tag: p + end) else {
                throw .authenticationFailed
            }
        }
        table.pointee.rtpRecord(slot ?? table.pointee.insert(ssrc), index)
        return end
    }

    /// Protects the (compound) RTCP packet in `buffer[0..<length]` in place;
    /// returns the new length (`length + suite.rtcpOverhead`). The payload
    /// after the first 8 bytes is always encrypted (E = 1).
    public func protectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        let p = try validate(buffer, length, .outbound, minLength: Self.rtcpHeaderLength, spare: suite.rtcpOverhead)
        let ssrc = Self.be32(p + 4)
        let slot = table.pointee.find(ssrc) ?? table.pointee.insert(ssrc)
        let index = table.pointee.nextRTCPIndex(slot)
        let iv = rtcpIV(ssrc: ssrc, index: index)
        if let auth = rtcpAuth {
            // RFC 3711 §3.4: header ‖ encrypted payload ‖ E‖index ‖ tag; the tag covers the index.
            guard rtcpKeystream.unsafelyUnwrapped.apply(iv: iv, p + 8, length - 8) else {
                throw .library(status: 0, function: "AES-CM")
            }
            Self.store32(0x8000_0000 | index, p + length)
            auth.mac(p, length + 4, trailer: p, 0, into: scratch + 16)
            (p + length + 4).update(from: scratch + 16, count: tagLength)
        } else {
            // RFC 7714 §9: header ‖ ciphertext ‖ tag ‖ E‖index; AAD = header ‖ E‖index.
            let trailer = p + length + 16
            Self.store32(0x8000_0000 | index, trailer)
            let gcm = rtcpCipher.unsafelyUnwrapped
            guard gcm.seal(iv: iv, aad: p, 8, aad2: trailer, 4, p + 8, length - 8, tag: p + length) else {
                throw .library(status: 0, function: "AES-GCM seal")
            }
        }
        return length + suite.rtcpOverhead
    }

    /// Verifies and decrypts the SRTCP packet in `buffer[0..<length]` in
    /// place; returns the RTCP length. Accepts unencrypted (E = 0) SRTCP.
    public func unprotectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        let p = try validate(buffer, length, .inbound, minLength: Self.rtcpHeaderLength + suite.rtcpOverhead, spare: 0)
        let plainLength = length - suite.rtcpOverhead
        let trailer = isGCM ? p + length - 4 : p + plainLength
        let word = Self.be32(trailer)
        let encrypted = word & 0x8000_0000 != 0
        let index = word & 0x7FFF_FFFF
        let ssrc = Self.be32(p + 4)
        let slot = table.pointee.find(ssrc)
        guard table.pointee.rtcpIsFresh(slot, index) else { throw .replayed }
        if let auth = rtcpAuth {
            auth.mac(p, plainLength + 4, trailer: p, 0, into: scratch + 16)
            guard CRYPTO_memcmp(scratch + 16, p + plainLength + 4, tagLength) == 0 else { throw .authenticationFailed }
            if encrypted {
                let iv = rtcpIV(ssrc: ssrc, index: index)
                guard rtcpKeystream.unsafelyUnwrapped.apply(iv: iv, p + 8, plainLength - 8) else {
                    throw .library(status: 0, function: "AES-CM")
                }
            }
        } else {
            let iv = rtcpIV(ssrc: ssrc, index: index)
            let gcm = rtcpCipher.unsafelyUnwrapped
            // E = 0 (RFC 7714 §9.2): the whole RTCP packet is associated data, nothing is encrypted.
            let ok = encrypted
                ? gcm.open(iv: iv, aad: p, 8, aad2: trailer, 4, p + 8, plainLength - 8, tag: p + plainLength)
                : gcm.open(iv: iv, aad: p, plainLength, aad2: trailer, 4, p + 8, 0, tag: p + plainLength)
            guard ok else { throw .authenticationFailed }
        }
        table.pointee.rtcpRecord(slot ?? table.pointee.insert(ssrc), index)
        return plainLength
    }

    // MARK: - Array conveniences (tests, control paths; they may reallocate)

    /// Protects `packet` (RTP, or RTCP when `rtcp`) and returns the SRTP bytes.
    public func protect(_ packet: [UInt8], rtcp: Bool = false) throws(SRTPError) -> [UInt8] {
        var buf = packet + [UInt8](repeating: 0, count: SRTPSuite.maxOverhead)
        let result = buf.withUnsafeMutableBytes { b in
            Result { () throws(SRTPError) -> Int in
                rtcp ? try protectRTCP(b, length: packet.count) : try protectRTP(b, length: packet.count)
            }
        }
        return Array(buf.prefix(try result.get()))
    }

    /// Unprotects `packet` (SRTP, or SRTCP when `rtcp`) and returns the plain bytes.
    public func unprotect(_ packet: [UInt8], rtcp: Bool = false) throws(SRTPError) -> [UInt8] {
        var buf = packet
        let result = buf.withUnsafeMutableBytes { b in
            Result { () throws(SRTPError) -> Int in
                rtcp ? try unprotectRTCP(b, length: packet.count) : try unprotectRTP(b, length: packet.count)
            }
        }
        return Array(buf.prefix(try result.get()))
    }
}
