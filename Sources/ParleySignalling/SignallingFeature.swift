import ParleyAuth
import ParleyCore
import ParleyProtocol

/// A service on the signalling connection (calls today; chat and recording
/// later). It registers the message types it answers with
/// `SignallingCore.register`; the core does the rest — auth, sessions,
/// connections, rate limits, errors — and hands it each request of its types
/// from an authenticated session, on the signalling thread.
///
/// Every method runs on the signalling thread. A request is answered once
/// through its `SignallingReply`, at once or later (after an asynchronous
/// backend call; come back with `SignallingCore.onSignallingThread` first).
public protocol SignallingFeature: AnyObject {
    /// The request `type`s this feature answers.
    var messageTypes: [String] { get }
    func handle(_ request: ClientRequest, from session: SignallingSession, reply: SignallingReply)
    /// A connection authenticated into `session` (a new one, or one it took
    /// over). Returns fields for the `auth` reply (calls: the media session
    /// the device resumes).
    func authenticated(_ session: SignallingSession) -> [String: JSONValue]
    /// Whether `session` has state worth keeping when its connection drops:
    /// then the session outlives it for the grace period, and a new
    /// connection of the same device resumes it (`"resumed": true`).
    func holds(_ session: SignallingSession) -> Bool
    /// The session sent `ping`.
    func pinged(_ session: SignallingSession)
    /// The session is over: its connection closed and nothing held it, its
    /// grace period ran out, or it was ended (`SignallingCore.endSession`).
    func sessionEnded(_ session: SignallingSession, reason: String)
}

extension SignallingFeature {
    public func authenticated(_ session: SignallingSession) -> [String: JSONValue] { [:] }
    public func holds(_ session: SignallingSession) -> Bool { false }
    public func pinged(_ session: SignallingSession) {}
    public func sessionEnded(_ session: SignallingSession, reason: String) {}
}

/// A session belongs to one device of one user.
public struct SessionKey: Hashable, Sendable, CustomStringConvertible {
    /// The token's `sub`.
    public var user: String
    /// The `device` of `auth`, or `SessionKey.defaultDevice`.
    public var device: String

    /// The device of an `auth` that names none: each user has one, so a
    /// client that does not name devices gets today's one-session-per-user
    /// behaviour (a second connection takes the first one's session over).
    public static let defaultDevice = "default"

    public init(user: String, device: String = SessionKey.defaultDevice) {
        self.user = user
        self.device = device
    }

    public var description: String { "\(user)/\(device)" }
}

/// One device's signalling session: what `auth` established. It outlives
/// its connection while a feature holds it (the grace period).
public final class SignallingSession {
    public let key: SessionKey
    /// What the token of the latest `auth` grants.
    public internal(set) var claims: AuthClaims
    /// The room named in `auth`, else the token's; nil for a token valid
    /// for any room (then `join` names one).
    public internal(set) var room: String?
    /// The connection it is bound to; nil during the grace period.
    public internal(set) var connection: SignallingCore.ConnectionID?
    /// Bumped on every disconnect and takeover, so a stale grace timer does nothing.
    var generation = 0

    init(key: SessionKey, claims: AuthClaims, room: String?) {
        self.key = key
        self.claims = claims
        self.room = room
    }

    public var user: String { key.user }
    public var isConnected: Bool { connection != nil }
}

/// The one answer to one request. Call it once, on the signalling thread;
/// it goes to the connection that asked, if that is still open.
public struct SignallingReply {
    /// Strong: a reply lives until answered, and an unowned reference costs
    /// an atomic on the side table at each copy and each use.
    let core: SignallingCore
    let connection: SignallingCore.ConnectionID
    /// The request's `id` and `type`, which the answer carries.
    public let id: JSONValue
    public let type: String

    /// Replies `{"id": …, "type": …, "ok": true, …fields}`.
    public func ok(_ fields: [String: JSONValue]) { core.answer(self, .success(fields)) }
    /// Replies `{"id": …, "ok": true, "type": …}` (a chat.ack's: written
    /// without a dictionary).
    public func ok() {
        var w = JSONObjectWriter(capacity: 64)
        w.add("id", id)
        w.add("ok", true)
        w.add("type", type)
        ok(text: w.finish())
    }
    /// Replies with `text`, the whole reply as the caller wrote it (with a
    /// `JSONObjectWriter`, for a reply made once per chat message): it must be
    /// what `ok` would write, this reply's `id` and `type` and `"ok": true` included.
    public func ok(text: String) { core.answer(self, text: text) }
    /// Replies with an `error` (and closes the connection if the code says so).
    public func fail(_ error: SignallingError) { core.answer(self, .failure(error)) }

    /// Replies with what `body` returns or throws.
    public func with(_ body: () throws(SignallingError) -> [String: JSONValue]) {
        do { ok(try body()) } catch { fail(error) }
    }
}
