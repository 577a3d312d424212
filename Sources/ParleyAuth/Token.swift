import Foundation
import ParleyCore

/// What a Parley access token grants (the JWT claims set, RFC 7519 §4).
/// Wire names are documented in docs/protocol.md, section "Tokens".
public struct TokenClaims: Sendable, Equatable {
    /// `sub`: the user id.
    public var subject: String
    /// `room`: the only room this token may join; nil (absent) or "*" means any room.
    public var room: String?
    /// `iat`: issued at, seconds since the Unix epoch.
    public var issuedAt: Int64
    /// `exp`: expiry, seconds since the Unix epoch; rejected at or after it.
    public var expiresAt: Int64
    /// `nbf`: not valid before, seconds since the Unix epoch.
    public var notBefore: Int64?
    /// `pub`: may publish media tracks.
    public var canPublish: Bool
    /// `rec`: may start and stop recordings.
    public var canRecord: Bool
    /// `adm`: administrator (admin API, any room, every permission).
    public var isAdmin: Bool
    /// `trn`: may upload media and submit transcoding jobs (its own jobs and
    /// private assets only; `adm` sees every job).
    public var canTranscode: Bool

    public init(subject: String, room: String? = nil, issuedAt: Int64, expiresAt: Int64, notBefore: Int64? = nil,
                canPublish: Bool = false, canRecord: Bool = false, isAdmin: Bool = false, canTranscode: Bool = false) {
        self.subject = subject
        self.room = room
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.canPublish = canPublish
        self.canRecord = canRecord
        self.isAdmin = isAdmin
        self.canTranscode = canTranscode
    }

    /// Whether the token may join `room`.
    public func allowsRoom(_ room: String) -> Bool {
        isAdmin || self.room == nil || self.room == "*" || self.room == room
    }
}

/// Why a token was refused.
public enum TokenError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Not three base64url parts, bad JSON, or required claims missing/mistyped.
    case malformed(String)
    /// The header's `alg` is not HS256 (this includes `none`).
    case wrongAlgorithm(String)
    case badSignature
    /// `exp` is at or before now.
    case expired
    /// `nbf` is after now.
    case notYetValid

    public var description: String {
        switch self {
        case .malformed(let why): return "malformed token: \(why)"
        case .wrongAlgorithm(let alg): return "unsupported token algorithm \"\(alg)\" (only HS256)"
        case .badSignature: return "bad token signature"
        case .expired: return "token expired"
        case .notYetValid: return "token not yet valid"
        }
    }
}

/// JSON Web Tokens signed with HMAC-SHA-256 (RFC 7519, JWS RFC 7515, alg HS256 only).
public enum JWT {
    /// Longest token accepted by `verify`; bounds the work an attacker can cause.
    public static let maxTokenLength = 8192

    private struct Header: Codable { var alg: String; var typ: String? }

    private struct Payload: Codable {
        var sub: String
        var room: String?
        var iat: Int64?
        var exp: Int64
        var nbf: Int64?
        var pub: Bool?
        var rec: Bool?
        var adm: Bool?
        var trn: Bool?
    }

    /// Signs `claims` with `secret`: `base64url(header).base64url(claims).base64url(HMAC)`.
    public static func sign(_ claims: TokenClaims, secret: [UInt8]) -> String {
        let header = #"{"alg":"HS256","typ":"JWT"}"#
        let payload = Payload(sub: claims.subject, room: claims.room, iat: claims.issuedAt, exp: claims.expiresAt,
                              nbf: claims.notBefore, pub: claims.canPublish, rec: claims.canRecord, adm: claims.isAdmin,
                              trn: claims.canTranscode)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings, ints and bools cannot fail.
        let json = try! encoder.encode(payload)
        let signingInput = Base64.encodeURL(Array(header.utf8)) + "." + Base64.encodeURL([UInt8](json))
        let mac = MAC.hmacSHA256(key: secret, data: Array(signingInput.utf8))
        return signingInput + "." + Base64.encodeURL(mac)
    }

    /// Verifies the signature (constant-time), then the algorithm, then the
    /// time claims against `now` (seconds since the epoch) with `leeway`
    /// seconds of tolerated clock skew. Returns the claims.
    public static func verify(_ token: String, secret: [UInt8], now: Int64 = Int64(Date().timeIntervalSince1970),
                              leeway: Int64 = 0) throws(TokenError) -> TokenClaims {
        guard token.utf8.count <= maxTokenLength else { throw .malformed("token too long") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("expected 3 dot-separated parts") }
        guard let headerBytes = Base64.decodeURL(parts[0]), let payloadBytes = Base64.decodeURL(parts[1]),
              let signature = Base64.decodeURL(parts[2]) else { throw .malformed("invalid base64url") }

        // The header is read first only to name the algorithm; nothing it
        // says is trusted until the MAC verifies, and only HS256 is accepted,
        // so "alg":"none" or an RS/HS confusion cannot bypass the check.
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: Data(headerBytes)) } catch {
            throw .malformed("invalid header JSON")
        }
        guard header.alg == "HS256" else { throw .wrongAlgorithm(header.alg) }

        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        let expected = MAC.hmacSHA256(key: secret, data: signingInput)
        guard MAC.constantTimeEqual(expected, signature) else { throw .badSignature }

        let payload: Payload
        do { payload = try JSONDecoder().decode(Payload.self, from: Data(payloadBytes)) } catch {
            throw .malformed("invalid or incomplete claims")
        }
        guard !payload.sub.isEmpty else { throw .malformed("empty sub") }
        if now >= payload.exp &+ leeway { throw .expired }
        if let nbf = payload.nbf, now &+ leeway < nbf { throw .notYetValid }
        return TokenClaims(subject: payload.sub, room: payload.room, issuedAt: payload.iat ?? 0,
                           expiresAt: payload.exp, notBefore: payload.nbf, canPublish: payload.pub ?? false,
                           canRecord: payload.rec ?? false, isAdmin: payload.adm ?? false,
                           canTranscode: payload.trn ?? false)
    }
}

/// Parses token lifetimes such as "90s", "30m", "1h", "2d", "1h30m" into seconds.
public enum TokenDuration {
    /// Longest lifetime accepted: 366 days.
    public static let maxSeconds: Int64 = 366 * 86_400

    /// Seconds, or nil for an empty, zero, unit-less, unknown-unit or over-long duration.
    public static func parse(_ text: String) -> Int64? {
        var total: Int64 = 0
        var number: Int64?
        for c in text.unicodeScalars {
            if c.value >= 0x30 && c.value <= 0x39 {
                let n = (number ?? 0) * 10 + Int64(c.value - 0x30)
                if n > maxSeconds { return nil }
                number = n
                continue
            }
            guard let n = number else { return nil }
            let unit: Int64
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86_400
            default: return nil
            }
            total += n * unit
            if total > maxSeconds { return nil }
            number = nil
        }
        guard number == nil, total > 0 else { return nil }
        return total
    }
}
