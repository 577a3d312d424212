import ParleyAuth
import Foundation
import ParleyChat
import ParleyCore
import ParleyWeb

/// Chat's admin API (an `adm` token): `GET /admin/chat` (totals: messages
/// stored, conversations, groups, users, media) and
/// `GET /admin/chat/users/{user}` (a user's conversations with their marks,
/// messages it has stored, last seen), and `GET /admin/chat/notifier` (the
/// offline notifier's queue, requests in flight and totals). Answered from the chat store's
/// writer thread, like every chat read.
enum ChatAdminRoutes {
    static func install(on router: HTTPRouter, chat: ChatStore, notifier: WebhookNotifier?, auth: BearerAuth) {
        router.add("GET", .exact("/admin/chat/notifier")) { req, responder in
            guard auth.admit(.admin, req, responder) != nil else { return }
            guard let notifier else { return responder.respond(.json(.ok, ["configured": false])) }
            let asked = notifier.state { state in
                guard case .object(var o) = state else { return }
                o["configured"] = true
                responder.respond(.json(.ok, .object(o)))
            }
            if !asked { responder.respond(.busy) }
        }
        router.add("GET", .exact("/admin/chat")) { req, responder in
            guard auth.admit(.admin, req, responder) != nil else { return }
            answer(responder) { try chat.totals(completion: $0) }
        }
        router.add("GET", .prefix("/admin/chat/users/")) { req, responder in
            guard auth.admit(.admin, req, responder) != nil else { return }
            let user = req.pathRemainder.removingPercentEncoding ?? req.pathRemainder
            guard !user.isEmpty, user.utf8.count <= 256, !user.contains("/") else {
                return responder.respond(.error(.notFound, "expected /admin/chat/users/{user}"))
            }
            answer(responder) { try chat.user(user, completion: $0) }
        }
    }

    /// Runs a store read and answers with its JSON (503 when the store's queue is full).
    private static func answer(_ responder: HTTPResponder,
                               _ read: (@escaping @Sendable (Result<JSONValue, Error>) -> Void) throws -> Void) {
        do {
            try read { result in
                switch result {
                case .success(let v): responder.respond(.json(.ok, v))
                case .failure(let e): responder.respond(.error(.internalServerError, "\(e)"))
                }
            }
        } catch {
            responder.respond(.busy)
        }
    }
}
