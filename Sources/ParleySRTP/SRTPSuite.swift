import Foundation

/// An SRTP protection profile (crypto suite).
public enum SRTPSuite: String, Sendable, CaseIterable {
    /// AES-128 counter mode + HMAC-SHA1 truncated to 80 bits (RFC 3711 / RFC 4568). The default.
    case aesCM128HmacSHA1_80
    /// AES-128 in Galois/Counter Mode with a 16-byte tag (RFC 7714).
    case aeadAES128GCM

    public static let `default` = SRTPSuite.aesCM128HmacSHA1_80

    /// The SDES crypto-suite name (RFC 4568 §6.2, RFC 7714 §12.2).
    public var sdesName: String {
        switch self {
        case .aesCM128HmacSHA1_80: return "AES_CM_128_HMAC_SHA1_80"
        case .aeadAES128GCM: return "AEAD_AES_128_GCM"
        }
    }

    public init?(sdesName: String) {
        guard let suite = SRTPSuite.allCases.first(where: { $0.sdesName == sdesName }) else { return nil }
        self = suite
    }

    /// Master key length in bytes.
    public var keyLength: Int { 16 }

    /// Master salt length in bytes (112 bits for AES-CM, 96 bits for GCM).
    public var saltLength: Int {
        switch self {
        case .aesCM128HmacSHA1_80: return 14
        case .aeadAES128GCM: return 12
        }
    }

    /// Authentication tag appended to each SRTP and SRTCP packet, in bytes.
    public var tagLength: Int {
        switch self {
        case .aesCM128HmacSHA1_80: return 10
        case .aeadAES128GCM: return 16
        }
    }

    /// Bytes `protectRTP` adds to a packet (the tag; Parley never uses an MKI).
    public var rtpOverhead: Int { tagLength }

    /// Bytes `protectRTCP` adds to a packet: the E flag + 31-bit SRTCP index, then the tag.
    public var rtcpOverhead: Int { 4 + tagLength }

    /// The largest overhead of any suite: spare capacity that always suffices.
    public static let maxOverhead = 4 + 16
}
