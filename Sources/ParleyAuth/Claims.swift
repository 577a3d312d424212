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
    /// `trn`: may upload media and submit transcoding jobs (HTTP only).
    public var canTranscode: Bool

    public init(subject: String, room: String?, expiresAt: Int, canPublish: Bool = true, canRecord: Bool = false, isAdmin: Bool = false,
                canTranscode: Bool = false) {
        self.subject = subject
        self.room = room
        self.expiresAt = expiresAt
        self.canPublish = canPublish
        self.canRecord = canRecord
        self.isAdmin = isAdmin
        self.canTranscode = canTranscode
    }
}

/// Checks a bearer token and returns its claims.
public protocol TokenVerifying: Sendable {
    func verify(_ token: String) -> Result<AuthClaims, TokenError>
}
