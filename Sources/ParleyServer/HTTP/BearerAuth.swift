import Foundation
import ParleyHTTP

/// A response a route gives up with: thrown from inside a handler written
/// with ``HTTPServerResponse/answering(_:)``.
struct HTTPRefusal: Error {
    var response: HTTPServerResponse

    init(_ response: HTTPServerResponse) { self.response = response }
    init(_ status: HTTPStatus, _ message: String) { response = .error(status, message) }
}

extension HTTPServerResponse {
    /// A synchronous handler whose body may throw an `HTTPRefusal` (its
    /// response is sent) or any other error (a 500 naming it).
    static func answering(_ body: @escaping @Sendable (HTTPServerRequest) throws -> HTTPServerResponse)
        -> @Sendable (HTTPServerRequest) -> HTTPServerResponse {
        { req in
            do { return try body(req) } catch let r as HTTPRefusal { return r.response } catch {
                return .error(.internalServerError, "\(error)")
            }
        }
    }
}

/// Access tokens on HTTP routes (docs/protocol.md "Tokens"): the token in
/// `Authorization: Bearer <token>`, or where a route allows it (HLS players
/// that cannot set headers) in `?token=`. No token is a 401 with
/// `WWW-Authenticate: Bearer`, a bad one a 401 with `error="invalid_token"`
/// (RFC 6750 §3), one without the grant a 403.
struct BearerAuth: Sendable {
    enum Grant: Sendable {
        /// `trn` (or `adm`): uploads, transcoding jobs, private HLS assets.
        case transcode
        /// `adm`: `/metrics` from off the host (see `metrics-access`).
        case admin

        var message: String {
            switch self {
            case .transcode: "a token with the transcode grant is required (parley token --can-transcode)"
            case .admin: "an admin token is required (parley token --admin)"
            }
        }
        func granted(by c: TokenClaims) -> Bool {
            switch self {
            case .transcode: c.isAdmin || c.canTranscode
            case .admin: c.isAdmin
            }
        }
    }

    let secret: [UInt8]

    /// The verified claims of a token carrying `grant`, or throws the refusal.
    func require(_ grant: Grant, _ req: HTTPServerRequest, allowQueryToken: Bool = false) throws(HTTPRefusal) -> TokenClaims {
        guard let token = req.bearerToken ?? (allowQueryToken ? req.queryValue("token") : nil) else {
            var r = HTTPServerResponse.error(.unauthorized, grant.message + " (Authorization: Bearer …)")
            r.headers.add("WWW-Authenticate", "Bearer")
            throw HTTPRefusal(r)
        }
        let claims: TokenClaims
        do { claims = try JWT.verify(token, secret: secret) } catch {
            var r = HTTPServerResponse.error(.unauthorized, "\(error)")
            r.headers.add("WWW-Authenticate", "Bearer error=\"invalid_token\"")
            throw HTTPRefusal(r)
        }
        guard grant.granted(by: claims) else { throw HTTPRefusal(.forbidden, "the token lacks the grant: " + grant.message) }
        return claims
    }
}
