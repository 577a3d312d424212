import ParleyCore
import Foundation

/// Verifies Parley access tokens (JWT HS256, docs/protocol.md "Tokens") with
/// the server secret from the data directory.
public struct JWTVerifier: TokenVerifying {
    let secret: [UInt8]
    /// Tolerated clock skew in seconds.
    public var leeway: Int64 = 0

    public init(secret: [UInt8]) { self.secret = secret }

    public func verify(_ token: String) -> Result<AuthClaims, TokenError> {
        do {
            let c = try JWT.verify(token, secret: secret, now: Int64(Date().timeIntervalSince1970), leeway: leeway)
            let room = c.room == "*" ? nil : c.room
            return .success(AuthClaims(subject: c.subject, room: room, expiresAt: Int(c.expiresAt),
                                       canPublish: c.canPublish || c.isAdmin, canRecord: c.canRecord || c.isAdmin,
                                       isAdmin: c.isAdmin, canTranscode: c.canTranscode || c.isAdmin))
        } catch {
            return .failure(error)
        }
    }
}
