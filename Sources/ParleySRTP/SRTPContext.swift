import CSRTP

/// Errors from SRTP key handling and packet processing.
public enum SRTPError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The packet's authentication tag did not verify (wrong key, forged or corrupted packet).
    case authenticationFailed
    /// The packet index was already seen or is older than the replay window.
    case replayed
    /// The buffer has less spare capacity than the suite's overhead.
    case bufferTooSmall(needed: Int, available: Int)
    /// Too short or not RTP/RTCP version 2.
    case malformedPacket
    /// Wrong key/salt length, bad base64, unsupported suite or parameter.
    case invalidKeyMaterial(String)
    /// Any other libsrtp status (`srtp_err_status_t`), with the call that returned it.
    case library(status: Int32, function: String)

    public var description: String {
        switch self {
        case .authenticationFailed: return "SRTP authentication failed"
        case .replayed: return "SRTP replay check failed"
        case .bufferTooSmall(let n, let a): return "SRTP buffer needs \(n) spare bytes, has \(a)"
        case .malformedPacket: return "not an RTP/RTCP packet"
        case .invalidKeyMaterial(let why): return "invalid SRTP key material: \(why)"
        case .library(let s, let f): return "\(f) failed with srtp_err_status \(s)"
        }
    }

    init(status: srtp_err_status_t, function: String) {
        switch status {
        case srtp_err_status_auth_fail: self = .authenticationFailed
        case srtp_err_status_replay_fail, srtp_err_status_replay_old, srtp_err_status_pkt_idx_old: self = .replayed
        default: self = .library(status: Int32(bitPattern: status.rawValue), function: function)
        }
    }
}

/// libsrtp must be initialised once per process before any session exists.
/// Swift initialises globals exactly once, thread-safely (swift_once).
private let libsrtpInitStatus: srtp_err_status_t = srtp_init()

/// One libsrtp session for one direction of one participant's media:
/// `.outbound` contexts protect what we send, `.inbound` contexts unprotect
/// what we receive. Any SSRC is accepted (libsrtp clones a stream per SSRC
/// from the template, inbound only after the first packet authenticates).
///
/// Packets are processed in place, in a caller-provided buffer whose spare
/// capacity covers the suite's overhead (`SRTPSuite.maxOverhead` always
/// does); this wrapper allocates nothing per packet. (Debian's libsrtp2 is
/// built on NSS, whose cipher contexts do allocate inside libsrtp2: see
/// docs/benchmarks.md, "SRTP".)
///
/// Threading: a context is not thread-safe. Use each one from one thread at
/// a time (in Parley, the event loop that owns the room); different contexts
/// may be used on different threads concurrently.
public final class SRTPContext {
    public enum Direction: Sendable {
        /// Protects packets we send (srtp_protect / srtp_protect_rtcp).
        case outbound
        /// Unprotects packets we receive (srtp_unprotect / srtp_unprotect_rtcp).
        case inbound
    }

    public let suite: SRTPSuite
    public let direction: Direction
    private var session: srtp_t?

    /// Smallest fixed RTP header (RFC 3550 §5.1) and RTCP header (§6.4).
    static let rtpHeaderLength = 12
    static let rtcpHeaderLength = 8
    /// Largest packet handled: a UDP datagram cannot carry more.
    public static let maxPacketLength = 65_535

    /// - Parameters:
    ///   - replayWindow: RTP replay window in packets (64…32767; default 1024,
    ///     so reordered video and retransmissions within ~1 s stay acceptable).
    ///     libsrtp's SRTCP window is fixed at 128.
    ///   - allowRetransmit: outbound only; lets the same sequence number be
    ///     protected again (a NACK resend of the *identical* packet). Never
    ///     enable it for packets whose payload differs.
    public init(material: SRTPKeyMaterial, direction: Direction, replayWindow: Int = 1024,
                allowRetransmit: Bool = false) throws(SRTPError) {
        guard libsrtpInitStatus == srtp_err_status_ok else { throw SRTPError(status: libsrtpInitStatus, function: "srtp_init") }
        guard (64..<0x8000).contains(replayWindow) else {
            throw .invalidKeyMaterial("replay window \(replayWindow) outside 64..<32768")
        }
        self.suite = material.suite
        self.direction = direction

        var policy = srtp_policy_t()
        switch material.suite {
        case .aesCM128HmacSHA1_80:
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        case .aeadAES128GCM:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        }
        policy.ssrc.type = direction == .outbound ? ssrc_any_outbound : ssrc_any_inbound
        policy.window_size = UInt(replayWindow)
        policy.allow_repeat_tx = allowRetransmit ? 1 : 0
        policy.next = nil

        var keyAndSalt = material.keyAndSalt
        var created: srtp_t?
        let status = keyAndSalt.withUnsafeMutableBufferPointer { key -> srtp_err_status_t in
            policy.key = key.baseAddress
            // srtp_create copies the key into the session's own storage.
            return srtp_create(&created, &policy)
        }
        // Do not leave the master key in our copy.
        for i in keyAndSalt.indices { keyAndSalt[i] = 0 }
        guard status == srtp_err_status_ok, let created else { throw SRTPError(status: status, function: "srtp_create") }
        session = created
    }

    deinit {
        if let session { srtp_dealloc(session) }
    }

    // MARK: - RTP and RTCP, in place

    /// Encrypts and authenticates the RTP packet in `buffer[0..<length]` in
    /// place; returns the new length (`length + suite.rtpOverhead`).
    @inline(__always)
    public func protectRTP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try process(buffer, length, .outbound, minLength: Self.rtpHeaderLength, spare: suite.rtpOverhead,
                    srtp_protect, "srtp_protect")
    }

    /// Verifies and decrypts the SRTP packet in `buffer[0..<length]` in
    /// place; returns the RTP length. Throws `.authenticationFailed` or
    /// `.replayed` for packets to drop.
    @inline(__always)
    public func unprotectRTP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try process(buffer, length, .inbound, minLength: Self.rtpHeaderLength + suite.tagLength, spare: 0,
                    srtp_unprotect, "srtp_unprotect")
    }

    /// Protects the (compound) RTCP packet in `buffer[0..<length]` in place;
    /// returns the new length (`length + suite.rtcpOverhead`).
    @inline(__always)
    public func protectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try process(buffer, length, .outbound, minLength: Self.rtcpHeaderLength, spare: suite.rtcpOverhead,
                    srtp_protect_rtcp, "srtp_protect_rtcp")
    }

    /// Verifies and decrypts the SRTCP packet in `buffer[0..<length]` in place; returns the RTCP length.
    @inline(__always)
    public func unprotectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try process(buffer, length, .inbound, minLength: Self.rtcpHeaderLength + suite.rtcpOverhead, spare: 0,
                    srtp_unprotect_rtcp, "srtp_unprotect_rtcp")
    }

    /// libsrtp's four packet calls share one C signature.
    private typealias PacketCall = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?,
                                                   UnsafeMutablePointer<Int32>?) -> srtp_err_status_t

    /// Checks the packet (RTP/RTCP version 2, at least `minLength`, at most a
    /// UDP datagram, `spare` bytes of room after it), then runs `call` in place.
    @inline(__always)
    private func process(_ buffer: UnsafeMutableRawBufferPointer, _ length: Int, _ expected: Direction, minLength: Int,
                         spare: Int, _ call: PacketCall, _ name: StaticString) throws(SRTPError) -> Int {
        precondition(direction == expected, "\(name) on an SRTPContext of the other direction")
        guard length >= minLength, length <= min(buffer.count, Self.maxPacketLength), let base = buffer.baseAddress,
              base.load(as: UInt8.self) >> 6 == 2 else { throw .malformedPacket }
        guard buffer.count - length >= spare else { throw .bufferTooSmall(needed: spare, available: buffer.count - length) }
        var len = Int32(length)
        let status = call(session, base, &len)
        guard status == srtp_err_status_ok else { throw SRTPError(status: status, function: "\(name)") }
        return Int(len)
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
