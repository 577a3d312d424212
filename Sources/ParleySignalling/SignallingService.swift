import ParleyWeb
import ParleyProtocol
import ParleyAuth
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO

/// The signalling endpoint: WebSocket connections on `/ws` feed one
/// `SignallingCore` (with its `CallService`) on the signalling thread, a
/// dedicated `EventLoop` (`loop`, thread `parley-sig-0`): messages and
/// connection events are posted to it with `execute`, its timers are the
/// loop's, and the admin routes answer from it through their responder.
/// Nothing waits for it.
///
/// Each connection has a request budget (a token bucket of `requestRate`
/// per second, `requestBurst` deep), checked on the connection's loop: a
/// request over it is answered there with `rate_limited` and never reaches
/// the signalling thread every connection shares. A connection that has more
/// than `requestBurst` requests refused in a row is closed (4029).
public final class SignallingService: WebSocketService, @unchecked Sendable {
    /// The signalling thread. `core` and `calls` are touched only on it.
    public let loop: EventLoop
    private let thread: EventLoopGroup
    let core: SignallingCore
    let calls: CallService
    /// Recording control; nil when the server records nothing.
    let recording: RecordingService?
    public let verifier: any TokenVerifying
    /// The admin API's token check: the one every HTTP route uses.
    let auth: BearerAuth
    /// Requests per second one connection may send, and how many at once.
    public let requestRate: Int
    public let requestBurst: Int
    let metrics = SignallingMetrics()

    /// What the connections' loops hand the signalling thread, in the order
    /// each loop saw it: what gathers while the thread is busy is one hop.
    enum Arrival: Sendable {
        case opened(WebSocketConnection)
        case message(WebSocketConnection, String)
        case closed(WebSocketConnection)
        /// Sent on regardless of its rate limit: closed after what it was allowed.
        case overLimit(WebSocketConnection)
    }
    private let arrivals: Inbox<Arrival>

    /// Starts the signalling thread. Stop it with `shutdown()`.
    public init(backend: any MediaBackend, verifier: any TokenVerifying, graceSeconds: Double = 15,
                maxParticipantsPerRoom: Int = 100, requestRate: Int = 50, requestBurst: Int = 200,
                recording recorder: (any RecordingBackend)? = nil, autoRecord: [String] = [],
                logger: Logger = Logger(label: "parley.signalling")) throws {
        self.verifier = verifier
        auth = BearerAuth(verifier: verifier)
        self.requestRate = requestRate
        self.requestBurst = requestBurst
        thread = try EventLoopGroup(numberOfThreads: 1, threadName: "parley-sig", logger: logger)
        loop = thread.loops[0]
        core = SignallingCore(verifier: verifier, scheduler: loop, graceSeconds: graceSeconds, logger: logger)
        let calls = CallService(core: core, backend: backend, maxParticipantsPerRoom: maxParticipantsPerRoom)
        self.calls = calls
        recording = recorder.map { [core] in RecordingService(core: core, calls: calls, backend: $0, autoRecord: autoRecord) }
        arrivals = Inbox(post: { [loop] in loop.execute($0) }, handle: { [core] batch in
            for a in batch {
                switch a {
                case .opened(let ws): core.connectionOpened(ws.id, transport: ws)
                case .message(let ws, let text): core.received(text, from: ws.id)
                case .closed(let ws): core.connectionClosed(ws.id)
                case .overLimit(let ws): core.close(ws.id, code: SignallingCloseCode.rateLimited, reason: "rate limit exceeded")
                }
            }
        })
    }

    /// Stops the signalling thread (after what was posted to it); what is
    /// posted later is dropped. Not from the signalling thread.
    public func shutdown() { thread.syncShutdownGracefully() }

    /// Adds a feature service beside `CallService` (chat): `make` runs on the
    /// signalling thread and registers it with the core. Waits until it has,
    /// so call it at start-up, from a thread that is not an event loop.
    public func addFeature(_ make: @escaping @Sendable (SignallingCore) -> Void) throws {
        try loop.submit { make(self.core) }
    }

    /// Runs `body` with the state machine on the signalling thread. Any thread.
    public func execute(_ body: @escaping @Sendable (SignallingCore, CallService) -> Void) {
        loop.execute { body(self.core, self.calls) }
    }

    // MARK: WebSocketService

    public func webSocketOpened(_ ws: WebSocketConnection, request: HTTPServerRequest) {
        ws.requestBudget = TokenBucket(rate: Double(requestRate), burst: Double(requestBurst), now: MonotonicTime.now().nanoseconds)
        arrivals.add(.opened(ws))
    }

    public func webSocket(_ ws: WebSocketConnection, received text: String) {
        guard ws.refusedInARow <= requestBurst else { return } // being closed (4029)
        let now = MonotonicTime.now().nanoseconds
        guard ws.requestBudget?.take(now: now) != false else {
            refuse(text, on: ws, now: now)
            return
        }
        ws.refusedInARow = 0
        arrivals.add(.message(ws, text))
    }

    /// Answers a request over the budget with `rate_limited` (on the
    /// connection's loop: it may overtake replies to earlier requests still
    /// waiting for the signalling thread). A connection that keeps on
    /// regardless is closed through the signalling thread (its `Inbox`, after its messages), so
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
            arrivals.add(.overLimit(ws))
        }
    }

    public func webSocketClosed(_ ws: WebSocketConnection) {
        arrivals.add(.closed(ws))
    }

    // MARK: Server events and admin

    /// The recording backend stopped recording `id` of `room` on its own
    /// (a disk limit, a write error, the room closing). Any thread.
    public func recordingEnded(room: String, id: String, reason: String) {
        loop.execute { self.recording?.ended(room: room, id: id, reason: reason) }
    }

    /// Registers `/ws` and the admin API on `router`.
    public func install(on router: HTTPRouter) {
        router.addWebSocket("/ws", self)
        router.add("GET", .exact("/admin/rooms")) { [self] req, responder in
            guard auth.admit(.admin, req, responder) != nil else { return }
            loop.execute { responder.respond(.json(.ok, self.calls.roomsJSON())) }
        }
        router.add("POST", .prefix("/admin/rooms/")) { [self] req, responder in
            // /admin/rooms/{room}/recording
            let parts = req.pathRemainder.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[1] == "recording", !parts[0].isEmpty else {
                responder.respond(.error(.notFound, "expected /admin/rooms/{room}/recording"))
                return
            }
            guard auth.admit(.admin, req, responder) != nil else { return }
            startRecording(room: String(parts[0]), responder)
        }
        router.add("DELETE", .prefix("/admin/rooms/")) { [self] req, responder in
            // /admin/rooms/{room}/participants/{id} or /admin/rooms/{room}/recording
            let parts = req.pathRemainder.split(separator: "/", omittingEmptySubsequences: false)
            if parts.count == 2, parts[1] == "recording", !parts[0].isEmpty {
                guard auth.admit(.admin, req, responder) != nil else { return }
                stopRecording(room: String(parts[0]), responder)
                return
            }
            guard parts.count == 3, parts[1] == "participants", !parts[0].isEmpty, !parts[2].isEmpty else {
                responder.respond(.error(.notFound, "expected /admin/rooms/{room}/participants/{id} or /admin/rooms/{room}/recording"))
                return
            }
            guard auth.admit(.admin, req, responder) != nil else { return }
            let room = String(parts[0]), id = String(parts[2])
            loop.execute {
                if self.calls.kick(room: room, participant: id) {
                    responder.respond(HTTPServerResponse(status: .noContent))
                } else {
                    responder.respond(.error(.notFound, "no participant \(id) in room \(room)"))
                }
            }
        }
    }

    /// `POST /admin/rooms/{room}/recording`: 201 with the recording's id
    /// once it runs (200 when it already did), 404 without a call, 503
    /// when the server does not record.
    private func startRecording(room: String, _ responder: HTTPResponder) {
        loop.execute { [self] in
            guard let recording else { return responder.respond(.error(.serviceUnavailable, "this server does not record")) }
            let already = recording.recordingID(room: room) != nil
            guard calls.hasCall(room) else { return responder.respond(.error(.notFound, "room \(room) has no call to record")) }
            recording.start(room: room, by: "admin") { result in
                switch result {
                case .success(let id):
                    responder.respond(.json(already ? .ok : .created, ["room": .string(room), "recording": .string(id)]))
                case .failure(let e):
                    responder.respond(.error(.internalServerError, e.message))
                }
            }
        }
    }

    /// `DELETE /admin/rooms/{room}/recording`: 200 with the id of the
    /// recording stopped (one still starting: once it has started), 404
    /// when the room was not being recorded.
    private func stopRecording(room: String, _ responder: HTTPResponder) {
        loop.execute { [self] in
            guard let recording else { return responder.respond(.error(.notFound, "room \(room) is not being recorded")) }
            recording.stop(room: room, by: "admin") { result in
                switch result {
                case .success(let id): responder.respond(.json(.ok, ["room": .string(room), "recording": .string(id)]))
                case .failure(let e): responder.respond(.error(.notFound, e.message))
                }
            }
        }
    }
}
