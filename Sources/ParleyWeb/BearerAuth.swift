import ParleyAuth
import ParleyCore
import Foundation
import ParleyHTTP

/// A response a route gives up with: thrown from inside a handler written
/// with ``HTTPServerResponse/answering(_:)``.
public struct HTTPRefusal: Error {
    public var response: HTTPServerResponse

    public init(_ response: HTTPServerResponse) { self.response = response }
    public init(_ status: HTTPStatus, _ message: String) { response = .error(status, message) }
}

extension HTTPServerResponse {
    /// A synchronous handler whose body may throw an `HTTPRefusal` (its
    /// response is sent) or any other error (a 500 naming it).
    public static func answering(_ body: @escaping @Sendable (HTTPServerRequest) throws -> HTTPServerResponse)
        -> @Sendable (HTTPServerRequest) -> HTTPServerResponse {
        { req in
            do { return try body(req) } catch let r as HTTPRefusal { return r.response } catch {
                return .error(.internalServerError, "\(error)")
            }
        }
    }
}

/// Access tokens on HTTP routes (docs/protocol.md "Tokens"), the one check
/// every route that needs a token goes through (admin API, `/metrics`,
/// uploads, jobs, private HLS): the token in `Authorization: Bearer <token>`,
/// or where a route allows it (HLS players that cannot set headers) in
/// `?token=`. No token is a 401 with `WWW-Authenticate: Bearer`, a bad one a
/// 401 with `error="invalid_token"` (RFC 6750 §3), one without the grant a 403.
///
/// Built over the same `TokenVerifying` seam as signalling's `auth`, so a
/// token means the same on `/ws` and on HTTP, and tests can plug in a fake.
public struct BearerAuth: Sendable {
    public enum Grant: Sendable {
        /// Any valid token: the caller is its `sub` (chat media).
        case user
        /// `trn` (or `adm`): uploads, transcoding jobs, private HLS assets.
        case transcode
        /// `adm`: the admin API, and `/metrics` from off the host (see `metrics-access`).
        case admin

        var message: String {
            switch self {
            case .user: "a token is required (parley token)"
            case .transcode: "a token with the transcode grant is required (parley token --can-transcode)"
            case .admin: "an admin token is required (parley token --admin)"
            }
        }
        func granted(by c: AuthClaims) -> Bool {
            switch self {
            case .user: true
            case .transcode: c.isAdmin || c.canTranscode
            case .admin: c.isAdmin
            }
        }
    }

    let verifier: any TokenVerifying

    public init(verifier: any TokenVerifying) { self.verifier = verifier }
    /// Verifies Parley JWTs signed with the server secret.
    public init(secret: [UInt8]) { self.init(verifier: JWTVerifier(secret: secret)) }

    /// The verified claims of a token carrying `grant`; otherwise answers the
    /// refusal on `responder` and returns nil.
    public func admit(_ grant: Grant, _ req: HTTPServerRequest, _ responder: HTTPResponder,
                      allowQueryToken: Bool = false) -> AuthClaims? {
        do throws(HTTPRefusal) { return try require(grant, req, allowQueryToken: allowQueryToken) } catch {
            responder.respond(error.response)
            return nil
        }
    }

    /// The verified claims of a token carrying `grant`, or throws the refusal.
    public func require(_ grant: Grant, _ req: HTTPServerRequest, allowQueryToken: Bool = false) throws(HTTPRefusal) -> AuthClaims {
        guard let token = req.bearerToken ?? (allowQueryToken ? req.queryValue("token") : nil) else {
            var r = HTTPServerResponse.error(.unauthorized, grant.message + " (Authorization: Bearer …)")
            r.headers.add("WWW-Authenticate", "Bearer")
            throw HTTPRefusal(r)
        }
        switch verifier.verify(token) {
        case .failure(let f):
            var r = HTTPServerResponse.error(.unauthorized, f.description)
            r.headers.add("WWW-Authenticate", "Bearer error=\"invalid_token\"")
            throw HTTPRefusal(r)
        case .success(let claims):
            guard grant.granted(by: claims) else { throw HTTPRefusal(.forbidden, "the token lacks the grant: " + grant.message) }
            return claims
        }
    }
}
