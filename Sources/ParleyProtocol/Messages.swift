/// The signalling protocol's messages (docs/protocol.md, "Signalling").
///
/// Every client message is a JSON object with a `type` and, for requests, an
/// `id` (a number or string the server echoes). The server answers each
/// request with exactly one reply (same `type`, `"ok": true`) or one `error`,
/// and pushes events (no `id`) when something changes in the room.

import ParleyAuth
import ParleyCore
import ParleyHTTP
import ParleyRTP

extension RoomTrack {
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "id": .string(id), "participant": .string(participant), "kind": .string(spec.kind.rawValue),
            "codec": .string(spec.codec), "payloadType": JSONValue(Int(spec.payloadType)),
            "clockRate": JSONValue(spec.clockRate), "ssrc": JSONValue(ssrc), "muted": .bool(muted),
        ]
        if spec.kind == .audio { o["channels"] = JSONValue(spec.channels) }
        // A simulcast track's layers (rids, lowest first): `quality` picks one.
        if !spec.rids.isEmpty { o["rids"] = .array(spec.rids.map { .string($0) }) }
        return .object(o)
    }
}

/// A request from a client: its `type` and the fields beside it, not yet
/// read. Each feature reads its own types into its own request enum
/// (`SessionRequest`, `CallRequest`; chat will add its own), so no enum
/// holds every message. The static constructors (`.auth(…)`, `.join(…)`)
/// are how clients write requests.
public struct ClientRequest: Sendable, Equatable {
    public var type: String
    /// Every field of the message but `id` and `type`.
    public var fields: [String: JSONValue]

    public init(type: String, fields: [String: JSONValue] = [:]) {
        self.type = type
        self.fields = fields
    }

    func fail(_ m: String) -> SignallingError { SignallingError(.badRequest, m) }

    /// A string field. Names (rooms, suites) are short; a token may be as long as JWT.verify accepts.
    public func string(_ key: String, optional: Bool = false, maxBytes: Int = 256) throws(SignallingError) -> String? {
        guard let f = fields[key], f != .null else {
            if optional { return nil }
            throw fail("missing string field \"\(key)\"")
        }
        guard let s = f.stringValue, !s.isEmpty, s.utf8.count <= maxBytes else {
            throw fail("\"\(key)\" must be a non-empty string of at most \(maxBytes) bytes")
        }
        return s
    }

    /// A required string field.
    public func string(_ key: String, maxBytes: Int = 256) throws(SignallingError) -> String {
        try string(key, optional: false, maxBytes: maxBytes)!
    }

    public func bool(_ key: String, default d: Bool) throws(SignallingError) -> Bool {
        guard let f = fields[key], f != .null else { return d }
        guard let b = f.boolValue else { throw fail("\"\(key)\" must be true or false") }
        return b
    }
}

/// The requests of the session itself, which the signalling core answers
/// before any feature sees a message.
public enum SessionRequest: Sendable, Equatable {
    /// The first message on a connection. `room`, when given, must be one the
    /// token allows; `device` names the device (absent: the user's default device).
    case auth(token: String, room: String?, device: String?)
    case ping

    public static let types = ["auth", "ping"]

    /// Reads a request of one of `types`.
    public init(_ r: ClientRequest) throws(SignallingError) {
        switch r.type {
        case "auth":
            self = .auth(token: try r.string("token", maxBytes: JWT.maxTokenLength), room: try r.string("room", optional: true),
                         device: try r.string("device", optional: true, maxBytes: SessionRequest.maxDeviceBytes))
        case "ping": self = .ping
        default: throw SignallingError(.unknownType, "unknown message type \"\(r.type)\"")
        }
    }

    /// The longest device name, in bytes.
    public static let maxDeviceBytes = 64

    public var request: ClientRequest {
        switch self {
        case .auth(let token, let room, let device):
            var o: [String: JSONValue] = ["token": .string(token)]
            if let room { o["room"] = .string(room) }
            if let device { o["device"] = .string(device) }
            return ClientRequest(type: "auth", fields: o)
        case .ping: return ClientRequest(type: "ping")
        }
    }
}

extension ClientRequest {
    public static func auth(token: String, room: String?, device: String? = nil) -> ClientRequest {
        SessionRequest.auth(token: token, room: room, device: device).request
    }
    public static var ping: ClientRequest { SessionRequest.ping.request }
}

/// One client message: a request and the id to answer with.
public struct ClientMessage: Sendable, Equatable {
    /// A JSON number or string chosen by the client.
    public var id: JSONValue
    public var request: ClientRequest

    public init(id: JSONValue, request: ClientRequest) { self.id = id; self.request = request }

    /// The largest signalling message accepted, in bytes of JSON text: room
    /// for a chat message's 64 KiB of text once JSON-escaped.
    public static let maxSize = 256 * 1024

    /// Decodes the envelope of one message: a JSON object with an `id` and a
    /// string `type`. Its fields are read by whoever handles the type. A
    /// message that parses but is wrong in shape throws a `SignallingError`
    /// carrying the id (if one could be read), so the server can answer it
    /// with an `error`.
    public static func decode(_ text: String) throws(SignallingError) -> ClientMessage {
        guard text.utf8.count <= maxSize else { throw SignallingError(.badRequest, "message larger than \(maxSize) bytes") }
        let v: JSONValue
        do { v = try JSONValue.parse(text) } catch { throw SignallingError(.badRequest, "\(error)") }
        guard case .object(var o) = v else { throw SignallingError(.badRequest, "a message must be a JSON object") }
        guard let id = requestID(o.removeValue(forKey: "id")) else {
            throw SignallingError(.badRequest, "id must be an integer or a string of at most 64 bytes")
        }
        guard let type = o.removeValue(forKey: "type")?.stringValue else {
            throw SignallingError(.badRequest, "missing string field \"type\"", id: id)
        }
        guard id != .null else { throw SignallingError(.badRequest, "missing field \"id\"", id: id) }
        return ClientMessage(id: id, request: ClientRequest(type: type, fields: o))
    }

    /// A message's `id` member: null when absent, nil when not a valid id.
    private static func requestID(_ member: JSONValue?) -> JSONValue? {
        guard let raw = member else { return .null }
        switch raw {
        case .string(let s) where s.utf8.count <= 64: return raw
        case .number where raw.intValue != nil: return raw
        default: return nil
        }
    }

    /// The `id` of a message that is refused unread (rate limited), so the
    /// error still names the request; null when there is none to find.
    public static func requestID(in text: String) -> JSONValue {
        guard text.utf8.count <= maxSize, case .object(let o)? = try? JSONValue.parse(text) else { return .null }
        return requestID(o["id"]) ?? .null
    }

    /// The JSON text of this message (what a client sends).
    public var encoded: String {
        var o = request.fields
        o["id"] = id
        o["type"] = .string(request.type)
        return JSONValue.object(o).serialized
    }
}

extension TrackDescription {
    struct FieldError: Error { let message: String }

    init(json: JSONValue) throws(FieldError) {
        guard case .object(let o) = json else { throw FieldError(message: "a track must be an object") }
        guard let k = o["kind"]?.stringValue, let kind = MediaKind(rawValue: k) else {
            throw FieldError(message: "\"kind\" must be \"audio\" or \"video\"")
        }
        guard let codec = o["codec"]?.stringValue, !codec.isEmpty, codec.utf8.count <= 32 else {
            throw FieldError(message: "\"codec\" must be a codec name such as \"opus\"")
        }
        guard let pt = o["payloadType"]?.intValue, (0...127).contains(pt), !(72...76).contains(pt) else {
            throw FieldError(message: "\"payloadType\" must be 0-127 and not 72-76 (RFC 5761)")
        }
        guard let rate = o["clockRate"]?.intValue, (1000...1_000_000).contains(rate) else {
            throw FieldError(message: "\"clockRate\" must be 1000-1000000 Hz")
        }
        var channels = 1
        if let c = o["channels"], c != .null {
            guard let n = c.intValue, (1...8).contains(n) else { throw FieldError(message: "\"channels\" must be 1-8") }
            channels = n
        }
        var ssrc: UInt32?
        if let s = o["ssrc"], s != .null {
            guard let n = s.intValue, n > 0, n <= Int(UInt32.max) else { throw FieldError(message: "\"ssrc\" must be 1-4294967295") }
            ssrc = UInt32(n)
        }
        self.init(kind: kind, codec: codec, payloadType: UInt8(pt), clockRate: rate, channels: channels, ssrc: ssrc)
    }

    var json: JSONValue {
        var o: [String: JSONValue] = ["kind": .string(kind.rawValue), "codec": .string(codec),
                                      "payloadType": JSONValue(Int(payloadType)), "clockRate": JSONValue(clockRate)]
        if kind == .audio { o["channels"] = JSONValue(channels) }
        if let ssrc { o["ssrc"] = JSONValue(ssrc) }
        return .object(o)
    }
}

/// Error codes of the protocol; the string is what goes on the wire.
public enum SignallingErrorCode: String, Sendable, Equatable, CaseIterable {
    case badRequest = "bad_request"
    case unknownType = "unknown_type"
    case notAuthenticated = "not_authenticated"
    case alreadyAuthenticated = "already_authenticated"
    case invalidToken = "invalid_token"
    case tokenExpired = "token_expired"
    case wrongRoom = "wrong_room"
    case forbidden = "forbidden"
    case notJoined = "not_joined"
    case alreadyJoined = "already_joined"
    case unknownTrack = "unknown_track"
    case roomFull = "room_full"
    case unsupported = "unsupported"
    case internalError = "internal"
    /// Over the connection's request rate; the error carries `retryAfter`.
    case rateLimited = "rate_limited"
    /// Chat: a message over `chat-max-message-bytes`; nothing was stored.
    case tooLarge = "too_large"
    /// Chat: the store's write queue is full; retry after `retryAfter` ms.
    case busy = "busy"
    /// Chat: not a member of that conversation (or no such conversation).
    case notMember = "not_member"
    /// Chat: the user already has `chat-max-devices` devices connected; this one gets no chat.
    case tooManyDevices = "too_many_devices"
    /// Chat: the group would have more than `chat-max-group-members` members.
    case groupFull = "group_full"
    /// Chat: the recipient has `chat-max-undelivered` messages of this conversation waiting.
    case backlogFull = "backlog_full"

    /// The WebSocket close code sent after this error, when it ends the connection.
    public var closeCode: UInt16? {
        switch self {
        case .notAuthenticated, .invalidToken: return 4001
        case .tokenExpired: return 4002
        case .wrongRoom: return 4003
        default: return nil
        }
    }
}

/// WebSocket close codes the server uses (4000-4999 are application codes, RFC 6455 §7.4.2).
public enum SignallingCloseCode {
    /// Not authenticated: bad token, or a request before `auth`.
    public static let unauthorized: UInt16 = 4001
    public static let tokenExpired: UInt16 = 4002
    public static let wrongRoom: UInt16 = 4003
    /// Another connection resumed this participant's session.
    public static let replaced: UInt16 = 4004
    /// An administrator removed the participant.
    public static let kicked: UInt16 = 4005
    /// No `auth` within the auth timeout.
    public static let authTimeout: UInt16 = 4008
    /// The client left more than `max-queued-bytes` unread.
    public static let slowConsumer: UInt16 = WebSocketCloseCode.slowConsumer.rawValue
    /// The client kept sending after more than `signalling-burst` requests in
    /// a row were refused as `rate_limited`.
    public static let rateLimited: UInt16 = 4029
}

/// An error answer: a code from the table, a human-readable message, and
/// the id of the request it answers (null when the request had none).
public struct SignallingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: SignallingErrorCode
    public var message: String
    public var id: JSONValue
    /// `rate_limited` only: milliseconds until the server takes a request again.
    public var retryAfterMilliseconds: Int?

    public init(_ code: SignallingErrorCode, _ message: String, id: JSONValue = .null, retryAfterMilliseconds: Int? = nil) {
        self.code = code
        self.message = message
        self.id = id
        self.retryAfterMilliseconds = retryAfterMilliseconds
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["id": id, "type": "error", "code": .string(code.rawValue), "message": .string(message)]
        if let ms = retryAfterMilliseconds { o["retryAfter"] = JSONValue(ms) }
        return .object(o)
    }
}

/// Something that happened in the room, pushed to every other participant.
public enum ServerEvent: Sendable, Equatable {
    case participantJoined(participant: String)
    case participantLeft(participant: String, reason: String)
    case trackPublished(RoomTrack)
    case trackUnpublished(track: String, participant: String)
    case trackMuted(track: String, participant: String, muted: Bool)
    case recordingStarted(room: String)
    case recordingStopped(room: String)

    public var json: JSONValue {
        switch self {
        case .participantJoined(let p):
            return ["type": "participant_joined", "participant": .string(p)]
        case .participantLeft(let p, let reason):
            return ["type": "participant_left", "participant": .string(p), "reason": .string(reason)]
        case .trackPublished(let t):
            return ["type": "track_published", "track": t.json]
        case .trackUnpublished(let t, let p):
            return ["type": "track_unpublished", "track": .string(t), "participant": .string(p)]
        case .trackMuted(let t, let p, let m):
            return ["type": "track_muted", "track": .string(t), "participant": .string(p), "muted": .bool(m)]
        case .recordingStarted(let r):
            return ["type": "recording_started", "room": .string(r)]
        case .recordingStopped(let r):
            return ["type": "recording_stopped", "room": .string(r)]
        }
    }
}

/// Builds a reply: `{"id": …, "type": <request type>, "ok": true, …fields}`.
public func signallingReply(id: JSONValue, type: String, _ fields: [String: JSONValue] = [:]) -> JSONValue {
    var o = fields
    o["id"] = id
    o["type"] = .string(type)
    o["ok"] = .bool(true)
    return .object(o)
}
