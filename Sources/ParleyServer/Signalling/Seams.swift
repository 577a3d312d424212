/// The parts the signalling state machine talks to, as small protocols so
/// the state machine is tested with bytes alone and the daemon plugs in the
/// real ones (JWT verification, the relay, the WebSocket connection).

/// What a valid token says (JWT claims, see docs/protocol.md "Tokens").
public struct AuthClaims: Sendable, Equatable {
    /// `sub`: the participant id.
    public var subject: String
    /// `room`: the only room this token may join; nil means any room (then
    /// `auth` names the room).
    public var room: String?
    /// `exp`: seconds since the epoch.
    public var expiresAt: Int
    /// `pub`: may publish tracks.
    public var canPublish: Bool
    /// `rec`: may start and stop recordings.
    public var canRecord: Bool
    /// `adm`: may use the admin API, join any room.
    public var isAdmin: Bool

    /// The room a connection authenticating with these claims enters.
    public func resolveRoom(requested: String?) throws(SignallingError) -> String {
        switch (room, requested) {
        case (let r?, let q?) where r != q && !isAdmin:
            throw SignallingError(.wrongRoom, "the token is for room \"\(r)\", not \"\(q)\"")
        case (_, let q?): return q
        case (let r?, nil): return r
        case (nil, nil): throw SignallingError(.badRequest, "this token is valid for any room: name one in \"room\"")
        }
    }

    public init(subject: String, room: String?, expiresAt: Int, canPublish: Bool = true, canRecord: Bool = false, isAdmin: Bool = false) {
        self.subject = subject
        self.room = room
        self.expiresAt = expiresAt
        self.canPublish = canPublish
        self.canRecord = canRecord
        self.isAdmin = isAdmin
    }
}

/// Why a token was refused.
public enum AuthFailure: Error, Sendable, Equatable {
    /// Not a JWT, or claims missing or of the wrong type.
    case malformed(String)
    /// The HMAC does not match the server secret.
    case badSignature
    /// `exp` is in the past.
    case expired
    /// `nbf` is in the future.
    case notYetValid

    public var signallingError: SignallingError {
        switch self {
        case .malformed(let m): return SignallingError(.invalidToken, "token is malformed: \(m)")
        case .badSignature: return SignallingError(.invalidToken, "token signature does not verify")
        case .expired: return SignallingError(.tokenExpired, "token has expired")
        case .notYetValid: return SignallingError(.invalidToken, "token is not valid yet")
        }
    }
}

/// Checks a bearer token and returns its claims.
public protocol TokenVerifying: Sendable {
    func verify(_ token: String) -> Result<AuthClaims, AuthFailure>
}

/// One SRTP master key and salt with its crypto suite (RFC 4568 SDES).
public struct SRTPKeyMaterial: Sendable, Equatable {
    public enum Suite: String, Sendable, CaseIterable {
        case aesCM128HmacSHA1_80 = "AES_CM_128_HMAC_SHA1_80"
        case aeadAES128GCM = "AEAD_AES_128_GCM"

        public var keyLength: Int { 16 }
        public var saltLength: Int { self == .aeadAES128GCM ? 12 : 14 }
    }

    public var suite: Suite
    /// Master key ‖ master salt.
    public var keyAndSalt: [UInt8]

    public init(suite: Suite, keyAndSalt: [UInt8]) {
        precondition(keyAndSalt.count == suite.keyLength + suite.saltLength, "wrong key length for \(suite.rawValue)")
        self.suite = suite
        self.keyAndSalt = keyAndSalt
    }

    /// A fresh key from the system CSPRNG (getrandom(2) behind
    /// SystemRandomNumberGenerator, documented as cryptographically secure).
    public static func random(_ suite: Suite) -> SRTPKeyMaterial {
        var rng = SystemRandomNumberGenerator()
        let n = suite.keyLength + suite.saltLength
        var bytes = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var word = rng.next()
            for _ in 0..<8 where i < n {
                bytes[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return SRTPKeyMaterial(suite: suite, keyAndSalt: bytes)
    }

    /// RFC 4568 §6.1 key parameter: `inline:` base64(key ‖ salt).
    public var inline: String { "inline:" + base64(keyAndSalt) }

    /// Parses an `inline:` key parameter for `suite` (lifetime/MKI suffixes are refused).
    public init?(suite: Suite, inline text: String) {
        guard text.hasPrefix("inline:"), let bytes = base64Decode(String(text.dropFirst(7))),
              bytes.count == suite.keyLength + suite.saltLength else { return nil }
        self.init(suite: suite, keyAndSalt: bytes)
    }
}

/// The two keys of one participant's media session, named from the client's side:
/// the client protects what it sends with `send` (the relay unprotects with it),
/// and unprotects what it receives with `receive` (the relay protects with it).
public struct SRTPSessionKeys: Sendable, Equatable {
    public var send: SRTPKeyMaterial
    public var receive: SRTPKeyMaterial

    public init(send: SRTPKeyMaterial, receive: SRTPKeyMaterial) { self.send = send; self.receive = receive }

    public static func random(_ suite: SRTPKeyMaterial.Suite) -> SRTPSessionKeys {
        SRTPSessionKeys(send: .random(suite), receive: .random(suite))
    }

    public var json: JSONValue {
        ["suite": .string(send.suite.rawValue), "send": .string(send.inline), "receive": .string(receive.inline)]
    }
}

/// What the media side grants a joining participant.
public struct MediaGrant: Sendable, Equatable {
    /// Where to send RTP/RTCP/STUN (the room's UDP socket).
    public var host: String
    public var port: Int
    /// STUN short-term credentials: the client sends Binding requests with
    /// USERNAME `iceUfrag` and MESSAGE-INTEGRITY keyed with `icePassword`.
    public var iceUfrag: String
    public var icePassword: String
    /// SSRCs the participant may publish with, one per kind.
    public var ssrcs: [TrackKind: UInt32]

    public init(host: String, port: Int, iceUfrag: String, icePassword: String, ssrcs: [TrackKind: UInt32]) {
        self.host = host
        self.port = port
        self.iceUfrag = iceUfrag
        self.icePassword = icePassword
        self.ssrcs = ssrcs
    }
}

/// The relay as the signalling state machine sees it. Calls come from the
/// signalling queue, one at a time; an implementation may block briefly
/// (hopping to the room's event loop and back) but never on the signalling
/// queue itself.
public protocol MediaBackend: AnyObject {
    /// Creates the room if needed and adds the participant.
    func join(room: String, participant: String, publish: Bool, subscribe: Bool,
              keys: SRTPSessionKeys) throws(SignallingError) -> MediaGrant
    /// Removes the participant and everything it published or subscribed to.
    func leave(room: String, participant: String)
    /// Starts forwarding `ssrc` from this publisher (it must be one it was granted).
    func publish(room: String, participant: String, track: TrackSpec, ssrc: UInt32) throws(SignallingError)
    func unpublish(room: String, participant: String, ssrc: UInt32)
    /// Forwards `ssrc` of `publisher` to `subscriber`; returns the SSRC the subscriber will see.
    func subscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32) throws(SignallingError) -> UInt32
    func unsubscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32)
    /// A muted track is not forwarded.
    func setMuted(room: String, participant: String, ssrc: UInt32, muted: Bool)
}

/// The connection a session writes to. Implementations are thread-safe: the
/// state machine calls them from the signalling queue, and they hand the
/// bytes to the connection's event loop.
public protocol SignallingTransport: AnyObject, Sendable {
    func send(text: String)
    /// Sends a close frame with `code` and closes the connection.
    func close(code: UInt16, reason: String)
}

/// Runs a closure later on the signalling queue (grace periods, auth timeouts).
public protocol SignallingScheduler: AnyObject {
    func schedule(afterSeconds seconds: Double, _ body: @escaping () -> Void)
}

// MARK: base64 (RFC 4648 §4), for SDES key strings

private let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

func base64(_ bytes: [UInt8]) -> String {
    var out = [UInt8]()
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var i = 0
    while i + 3 <= bytes.count {
        let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
        for s in [18, 12, 6, 0] { out.append(alphabet[Int(v >> UInt32(s) & 63)]) }
        i += 3
    }
    let rest = bytes.count - i
    if rest > 0 {
        var v = UInt32(bytes[i]) << 16
        if rest == 2 { v |= UInt32(bytes[i + 1]) << 8 }
        out.append(alphabet[Int(v >> 18 & 63)])
        out.append(alphabet[Int(v >> 12 & 63)])
        out.append(rest == 2 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
        out.append(UInt8(ascii: "="))
    }
    return String(decoding: out, as: UTF8.self)
}

func base64Decode(_ s: String) -> [UInt8]? {
    var table = [Int8](repeating: -1, count: 256)
    for (i, c) in alphabet.enumerated() { table[Int(c)] = Int8(i) }
    let chars = Array(s.utf8)
    guard chars.count % 4 == 0 else { return nil }
    var out = [UInt8]()
    var i = 0
    while i < chars.count {
        var v: UInt32 = 0
        var pad = 0
        for j in 0..<4 {
            let c = chars[i + j]
            if c == UInt8(ascii: "=") && i + 4 == chars.count && j >= 2 {
                pad += 1
                v <<= 6
                continue
            }
            guard pad == 0, table[Int(c)] >= 0 else { return nil }
            v = v << 6 | UInt32(table[Int(c)])
        }
        out.append(UInt8(v >> 16 & 0xFF))
        if pad < 2 { out.append(UInt8(v >> 8 & 0xFF)) }
        if pad < 1 { out.append(UInt8(v & 0xFF)) }
        i += 4
    }
    return out
}
