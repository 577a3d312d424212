import ParleyWeb
import ParleyProtocol
import ParleyAuth
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO

/// The signalling endpoint: WebSocket connections on `/ws` feed one
/// `SignallingCore` on a serial queue (the control plane). Neither side ever
/// waits for the other: the media backend posts to a room's event loop and
/// the relay's answer is posted back to the queue.
///
/// Each connection has a request budget (a token bucket of `requestRate`
/// per second, `requestBurst` deep), checked on the connection's loop: a
/// request over it is answered there with `rate_limited` and never reaches
/// the queue every connection shares. A connection that has more than
/// `requestBurst` requests refused in a row is closed (4029).
public final class SignallingService: WebSocketService, @unchecked Sendable {
    public let queue: DispatchQueue
    /// Confined to `queue`.
    let core: SignallingCore
    public let verifier: any TokenVerifying
    /// The admin API's token check: the one every HTTP route uses.
    let auth: BearerAuth
    /// Requests per second one connection may send, and how many at once.
    public let requestRate: Int
    public let requestBurst: Int
    let metrics = SignallingMetrics()

    final class QueueScheduler: SignallingScheduler {
        let queue: DispatchQueue
        init(queue: DispatchQueue) { self.queue = queue }
        func schedule(afterSeconds seconds: Double, _ body: @escaping () -> Void) {
            nonisolated(unsafe) let b = body
            queue.asyncAfter(deadline: .now() + seconds) { b() }
        }
    }

    /// - Parameter queue: the signalling queue (the media backend answers joins on it).
    public init(queue: DispatchQueue = DispatchQueue(label: "parley.signalling"), backend: any MediaBackend,
                verifier: any TokenVerifying, graceSeconds: Double = 15,
                maxParticipantsPerRoom: Int = 100, requestRate: Int = 50, requestBurst: Int = 200,
                logger: Logger = Logger(label: "parley.signalling")) {
        self.queue = queue
        self.verifier = verifier
        auth = BearerAuth(verifier: verifier)
        self.requestRate = requestRate
        self.requestBurst = requestBurst
        let scheduler = QueueScheduler(queue: queue)
        core = SignallingCore(backend: backend, verifier: verifier, scheduler: scheduler, graceSeconds: graceSeconds,
                              maxParticipantsPerRoom: maxParticipantsPerRoom, logger: logger)
    }

    /// Runs `body` with the state machine on the signalling queue and waits.
    /// Not from the signalling queue itself.
    public func sync<T>(_ body: (SignallingCore) -> T) -> T { queue.sync { body(core) } }

    // MARK: WebSocketService

    public func webSocketOpened(_ ws: WebSocketConnection, request: HTTPServerRequest) {
        ws.requestBudget = TokenBucket(rate: Double(requestRate), burst: Double(requestBurst), now: MonotonicTime.now().nanoseconds)
        queue.async { self.core.connectionOpened(ws.id, transport: ws) }
    }

    public func webSocket(_ ws: WebSocketConnection, received text: String) {
        guard ws.refusedInARow <= requestBurst else { return } // being closed (4029)
        let now = MonotonicTime.now().nanoseconds
        guard ws.requestBudget?.take(now: now) != false else {
            refuse(text, on: ws, now: now)
            return
        }
        ws.refusedInARow = 0
        queue.async { self.core.received(text, from: ws.id) }
    }

    /// Answers a request over the budget with `rate_limited` (on the loop:
    /// it may overtake replies to earlier requests still on the queue). A
    /// connection that keeps on regardless is closed through the queue, so
    /// the requests it was allowed are answered first; what it sends after
    /// that is not read.
    private func refuse(_ text: String, on ws: WebSocketConnection, now: UInt64) {
        metrics.rateLimited.inc()
        let wait = ws.requestBudget?.nanosecondsUntilAvailable(now: now) ?? 0
        let ms = max(1, Int((wait + 999_999) / 1_000_000))
        let e = SignallingError(.rateLimited, "more than \(requestRate) requests per second (burst \(requestBurst)); retry after \(ms) ms",
                                id: ClientMessage.requestID(in: text), retryAfterMilliseconds: ms)
        ws.send(text: e.json.serialized)
        ws.refusedInARow += 1
        if ws.refusedInARow > requestBurst {
            metrics.rateLimitClosed.inc()
            queue.async { self.core.close(ws.id, code: SignallingCloseCode.rateLimited, reason: "rate limit exceeded") }
        }
    }

    public func webSocketClosed(_ ws: WebSocketConnection) {
        queue.async { self.core.connectionClosed(ws.id) }
    }

    // MARK: Server events and admin

    /// Tells a room that recording started or stopped (for the recorder).
    public func setRecording(room: String, _ on: Bool) {
        queue.async { self.core.setRecording(room: room, on) }
    }

    /// Registers `/ws` and the admin API on `router`.
    public func install(on router: HTTPRouter) {
        router.addWebSocket("/ws", self)
        router.add("GET", .exact("/admin/rooms")) { [self] req, responder in
            guard authorized(req, responder) else { return }
            queue.async { responder.respond(.json(.ok, self.core.roomsJSON())) }
        }
        router.add("DELETE", .prefix("/admin/rooms/")) { [self] req, responder in
            // /admin/rooms/{room}/participants/{id}
            let parts = req.pathRemainder.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[1] == "participants", !parts[0].isEmpty, !parts[2].isEmpty else {
                responder.respond(.error(.notFound, "expected /admin/rooms/{room}/participants/{id}"))
                return
            }
            guard authorized(req, responder) else { return }
            let room = String(parts[0]), id = String(parts[2])
            queue.async {
                if self.core.kick(room: room, participant: id) {
                    responder.respond(HTTPServerResponse(status: .noContent))
                } else {
                    responder.respond(.error(.notFound, "no participant \(id) in room \(room)"))
                }
            }
        }
    }

    /// True for a request with an admin token; otherwise answers it with
    /// the refusal (401/403, as every HTTP route that needs a token).
    private func authorized(_ req: HTTPServerRequest, _ responder: HTTPResponder) -> Bool {
        do throws(HTTPRefusal) {
            _ = try auth.require(.admin, req)
            return true
        } catch {
            responder.respond(error.response)
            return false
        }
    }
}
