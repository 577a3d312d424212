import ParleyProtocol
import ParleyAuth
import Foundation
import ParleyCore
import ParleyIO

/// The signalling state machine: connections, sessions, and the registry
/// of feature services that answer requests.
///
/// Not thread-safe: one instance is confined to the signalling thread
/// (`SignallingService.loop`), which feeds it connection events and
/// messages and runs its timers. Everything it does to the outside goes
/// through the seams: `SignallingTransport` (reply, close), `TokenVerifying`,
/// `SignallingScheduler`, `PresenceDirectory`; features (`CallService`)
/// bring their own.
///
/// A connection starts unauthenticated; `auth` binds it to the session of
/// (user, device): the token's `sub` and the `device` it names. A user may
/// have several devices connected at once. A new connection of a device that
/// is still connected takes its session over (the old one is closed, 4004).
/// While a feature holds a session (calls: a joined media session) it
/// survives its connection for `graceSeconds`, and the device's next
/// connection resumes it.
///
/// Every message is dispatched by `type`: `auth` and `ping` here, anything
/// else to the feature that registered the type, `unknown_type` otherwise.
public final class SignallingCore {
    public typealias ConnectionID = UInt64

    final class Connection {
        let id: ConnectionID
        let transport: any SignallingTransport
        var session: SessionKey?
        var closed = false
        init(id: ConnectionID, transport: any SignallingTransport) { self.id = id; self.transport = transport }
    }

    public let verifier: any TokenVerifying
    public let scheduler: any SignallingScheduler
    public let presence: any PresenceDirectory
    public var graceSeconds: Double
    public var authTimeoutSeconds: Double = 10
    public let log: Logger
    public let clock: () -> Int

    private var connections: [ConnectionID: Connection] = [:]
    private var sessions: [SessionKey: SignallingSession] = [:]
    private var features: [any SignallingFeature] = []
    /// Request type → the feature that answers it.
    private var handlers: [String: any SignallingFeature] = [:]

    let metrics = SignallingMetrics()

    public init(verifier: any TokenVerifying, scheduler: any SignallingScheduler,
                presence: any PresenceDirectory = LocalPresenceDirectory(), graceSeconds: Double = 15,
                logger: Logger = Logger(label: "parley.signalling"),
                clock: @escaping () -> Int = { Int(Date().timeIntervalSince1970) }) {
        self.verifier = verifier
        self.scheduler = scheduler
        self.presence = presence
        self.graceSeconds = graceSeconds
        self.log = logger
        self.clock = clock
        arrivals = Inbox(post: { [scheduler] in scheduler.execute($0) }, handle: { tasks in for task in tasks { task() } })
    }

    /// Adds a feature; its message types must be new.
    public func register(_ feature: any SignallingFeature) {
        for t in feature.messageTypes {
            precondition(handlers[t] == nil && !SessionRequest.types.contains(t), "message type \(t) registered twice")
            handlers[t] = feature
        }
        features.append(feature)
    }

    /// Wraps `body` so that calling the result on any thread runs `body` on
    /// the signalling thread: how a completion from another thread (the
    /// relay's loops, the chat store's writer) comes back to the state
    /// machine. Completions queue up in arrival order in an `Inbox`, so a
    /// store batch's completions cost the loop one hop, not one each.
    public func onSignallingThread<T: Sendable>(_ body: @escaping (T) -> Void) -> @Sendable (T) -> Void {
        nonisolated(unsafe) let b = body // runs on the signalling thread only
        let arrivals = self.arrivals
        return { value in arrivals.add({ b(value) }) }
    }

    private let arrivals: Inbox<@Sendable () -> Void>

    // MARK: Connection events

    public func connectionOpened(_ id: ConnectionID, transport: any SignallingTransport) {
        connections[id] = Connection(id: id, transport: transport)
        metrics.connections.inc()
        scheduler.schedule(afterSeconds: authTimeoutSeconds) { [weak self] in
            guard let self, let c = self.connections[id], c.session == nil, !c.closed else { return }
            self.close(c, code: SignallingCloseCode.authTimeout, reason: "no auth within \(Int(self.authTimeoutSeconds)) s")
        }
    }

    /// The connection is gone (peer closed, error, or we closed it).
    public func connectionClosed(_ id: ConnectionID) {
        guard let c = connections.removeValue(forKey: id) else { return }
        metrics.connections.dec()
        c.closed = true
        guard let key = c.session, let s = sessions[key], s.connection == id else { return }
        presence.disconnected(user: key.user, device: key.device, connection: id)
        s.connection = nil
        s.generation += 1
        guard features.contains(where: { $0.holds(s) }) else {
            removeSession(s, reason: "closed")
            return
        }
        let gen = s.generation
        log.info("connection lost; keeping session", ["user": .string(key.user), "device": .string(key.device),
                                                     "grace_s": .double(graceSeconds)])
        scheduler.schedule(afterSeconds: graceSeconds) { [weak self] in
            guard let self, let s = self.sessions[key], s.connection == nil, s.generation == gen else { return }
            self.log.info("grace period over; ending session", ["user": .string(key.user), "device": .string(key.device)])
            self.metrics.graceExpired.inc()
            self.removeSession(s, reason: "timeout")
        }
    }

    /// One text message from a connection.
    public func received(_ text: String, from id: ConnectionID) {
        guard let c = connections[id], !c.closed else { return }
        let message: ClientMessage
        do { message = try ClientMessage.decode(text) } catch {
            metrics.badRequests.inc()
            send(c, error.json)
            if c.session == nil { close(c, code: SignallingCloseCode.unauthorized, reason: "expected auth") }
            return
        }
        let request = message.request
        let reply = SignallingReply(core: self, connection: id, id: message.id, type: request.type)
        let feature = handlers[request.type]
        guard feature != nil || SessionRequest.types.contains(request.type) else {
            reply.fail(SignallingError(.unknownType, "unknown message type \"\(request.type)\""))
            if c.session == nil { close(c, code: SignallingCloseCode.unauthorized, reason: "expected auth") }
            return
        }
        if request.type == "auth" { return reply.with { () throws(SignallingError) in try auth(request, on: c) } }
        guard let key = c.session, let s = sessions[key] else {
            return reply.fail(SignallingError(.notAuthenticated, "the first message must be auth"))
        }
        guard let feature else {
            // ping: a receive-only tool (ffmpeg) sends nothing on its media port; its pings keep its sessions.
            for f in features { f.pinged(s) }
            return reply.ok(["time": JSONValue(clock())])
        }
        feature.handle(request, from: s, reply: reply)
    }

    /// Sends the answer to a request (`SignallingReply`).
    func answer(_ reply: SignallingReply, _ result: Result<[String: JSONValue], SignallingError>) {
        guard let c = connections[reply.connection], !c.closed else { return }
        switch result {
        case .success(let fields):
            send(c, signallingReply(id: reply.id, type: reply.type, fields))
        case .failure(var e):
            e.id = reply.id
            if e.code != .badRequest { metrics.errors.inc() } else { metrics.badRequests.inc() }
            send(c, e.json)
            if let code = e.code.closeCode { close(c, code: code, reason: e.code.rawValue) }
        }
    }

    /// Sends a reply the feature wrote itself (`SignallingReply.ok(text:)`).
    func answer(_ reply: SignallingReply, text: String) {
        guard let c = connections[reply.connection], !c.closed else { return }
        c.transport.send(text: text)
    }

    // MARK: Sessions

    private func auth(_ r: ClientRequest, on c: Connection) throws(SignallingError) -> [String: JSONValue] {
        guard case .auth(let token, let room, let device) = try SessionRequest(r) else { fatalError("auth is auth") }
        guard c.session == nil else { throw SignallingError(.alreadyAuthenticated, "this connection is already authenticated") }
        let claims: AuthClaims
        switch verifier.verify(token) {
        case .success(let cl): claims = cl
        case .failure(let f):
            metrics.authFailures.inc()
            log.info("auth refused", ["reason": .string("\(f)")])
            throw f.signallingError
        }
        let resolved: String?
        do { resolved = try claims.resolveRoom(requested: room) } catch {
            metrics.authFailures.inc()
            throw error
        }
        let key = SessionKey(user: claims.subject, device: device ?? SessionKey.defaultDevice)
        let s: SignallingSession
        if let existing = sessions[key] {
            s = existing
            if let old = s.connection, let oc = connections[old] {
                oc.session = nil
                presence.disconnected(user: key.user, device: key.device, connection: old)
                close(oc, code: SignallingCloseCode.replaced, reason: "session resumed by another connection")
            }
            s.generation += 1
            s.claims = claims
            s.room = resolved
        } else {
            s = SignallingSession(key: key, claims: claims, room: resolved)
            sessions[key] = s
        }
        s.connection = c.id
        c.session = key
        presence.connected(DevicePresence(user: key.user, device: key.device, connection: c.id, node: presence.node))
        var fields: [String: JSONValue] = [
            "participant": .string(key.user), "device": .string(key.device),
            "expiresAt": JSONValue(claims.expiresAt),
            "permissions": ["publish": .bool(claims.canPublish), "record": .bool(claims.canRecord), "admin": .bool(claims.isAdmin)],
        ]
        if let resolved { fields["room"] = .string(resolved) }
        for f in features { fields.merge(f.authenticated(s)) { $1 } }
        let resumed = features.contains { $0.holds(s) }
        fields["resumed"] = .bool(resumed)
        if resumed { metrics.resumes.inc() }
        log.info(resumed ? "session resumed" : "authenticated", ["user": .string(key.user), "device": .string(key.device)])
        return fields
    }

    private func removeSession(_ s: SignallingSession, reason: String) {
        guard sessions[s.key] === s else { return }
        sessions[s.key] = nil
        for f in features { f.sessionEnded(s, reason: reason) }
    }

    /// The session of a device, connected or in its grace period.
    public func session(_ key: SessionKey) -> SignallingSession? { sessions[key] }

    /// Ends a session now: its connection, if any, is closed with `close`
    /// (code and reason) and every feature is told (`sessionEnded`).
    public func endSession(_ key: SessionKey, reason: String, close closing: (code: UInt16, reason: String)? = nil) {
        guard let s = sessions[key] else { return }
        if let cid = s.connection, let c = connections[cid] {
            c.session = nil
            presence.disconnected(user: key.user, device: key.device, connection: cid)
            if let closing { close(c, code: closing.code, reason: closing.reason) }
            s.connection = nil
        }
        removeSession(s, reason: reason)
    }

    /// Sends an event to a session's connection, if it has one.
    public func send(_ event: ServerEvent, to key: SessionKey) {
        send(text: event.json.serialized, to: key)
    }

    /// Sends a message's text to a session's connection, if it has one.
    public func send(text: String, to key: SessionKey) {
        guard let cid = sessions[key]?.connection, let c = connections[cid], !c.closed else { return }
        c.transport.send(text: text)
    }

    public var connectionCount: Int { connections.count }
    public var sessionCount: Int { sessions.count }

    /// Closes a connection for a reason found outside the state machine
    /// (the service's rate limit); it is then gone as if the peer had closed.
    public func close(_ id: ConnectionID, code: UInt16, reason: String) {
        guard let c = connections[id] else { return }
        close(c, code: code, reason: reason)
    }

    // MARK: Output

    private func send(_ c: Connection, _ v: JSONValue) {
        guard !c.closed else { return }
        c.transport.send(text: v.serialized)
    }

    private func close(_ c: Connection, code: UInt16, reason: String) {
        guard !c.closed else { return }
        c.closed = true
        c.transport.close(code: code, reason: reason)
    }
}

/// Signalling counters in the shared registry (`/metrics`).
struct SignallingMetrics {
    let connections = MetricsRegistry.shared.gauge("parley_signalling_connections", help: "Open signalling WebSocket connections")
    let joins = MetricsRegistry.shared.counter("parley_signalling_joins_total", help: "Participants joined")
    let leaves = MetricsRegistry.shared.counter("parley_signalling_leaves_total", help: "Participants left (any reason)")
    let resumes = MetricsRegistry.shared.counter("parley_signalling_resumes_total", help: "Sessions resumed within the grace period")
    let graceExpired = MetricsRegistry.shared.counter("parley_signalling_grace_expired_total", help: "Sessions removed when the grace period ran out")
    let authFailures = MetricsRegistry.shared.counter("parley_signalling_auth_failures_total", help: "auth messages refused")
    let badRequests = MetricsRegistry.shared.counter("parley_signalling_bad_requests_total", help: "Malformed signalling messages")
    let errors = MetricsRegistry.shared.counter("parley_signalling_errors_total", help: "Requests answered with an error")
    let rateLimited = MetricsRegistry.shared.counter("parley_signalling_rate_limited_total", help: "Requests refused with rate_limited")
    let rateLimitClosed = MetricsRegistry.shared.counter("parley_signalling_rate_limit_closed_total", help: "Connections closed (4029) for sending on while rate limited")
}
