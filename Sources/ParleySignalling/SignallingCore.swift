import ParleyRTP
import ParleyProtocol
import ParleyAuth
import Foundation
import ParleyCore
import ParleySRTP

/// The signalling state machine: connections, participant sessions, rooms.
///
/// Not thread-safe: one instance is confined to the signalling queue
/// (`SignallingService`), which feeds it connection events and messages and
/// runs its timers. Everything it does to the outside goes through the seams:
/// `SignallingTransport` (reply, close), `MediaBackend` (the relay),
/// `TokenVerifying`, `SignallingScheduler`.
///
/// A connection starts unauthenticated; `auth` binds it to the participant
/// session named by the token's (room, sub). The session survives its
/// connection for `graceSeconds` once joined, and a new connection that
/// authenticates with the same room and subject takes it over (`resumed`).
///
/// A join is answered when the media backend answers (one hop to the room's
/// loop and back); meanwhile the session is `joining` and refuses other
/// media requests. The other media requests are posted to the backend and
/// answered at once.
public final class SignallingCore {
    public typealias ConnectionID = UInt64

    struct ParticipantKey: Hashable { var room: String; var id: String }

    final class Connection {
        let id: ConnectionID
        let transport: any SignallingTransport
        var participant: ParticipantKey?
        var closed = false
        init(id: ConnectionID, transport: any SignallingTransport) { self.id = id; self.transport = transport }
    }

    final class Session {
        let key: ParticipantKey
        var claims: AuthClaims
        var connection: ConnectionID?
        /// Bumped on every disconnect, so a stale grace timer does nothing.
        var generation = 0
        var joined: Joined?
        /// A join was sent to the media backend and has not been answered.
        var joining = false
        init(key: ParticipantKey, claims: AuthClaims) { self.key = key; self.claims = claims }
    }

    struct Joined {
        var publish: Bool
        var subscribe: Bool
        var keys: SRTPSessionKeys
        var grant: MediaGrant
        /// Published tracks by id.
        var tracks: [String: RoomTrack] = [:]
        /// Subscribed track id → SSRC the subscriber receives.
        var subscriptions: [String: UInt32] = [:]
        var joinedAt: Int
    }

    public let backend: any MediaBackend
    public let verifier: any TokenVerifying
    public let scheduler: any SignallingScheduler
    public var graceSeconds: Double
    public var authTimeoutSeconds: Double = 10
    public var maxParticipantsPerRoom: Int
    let log: Logger
    let clock: () -> Int

    private var connections: [ConnectionID: Connection] = [:]
    private var sessions: [ParticipantKey: Session] = [:]
    /// Joined participants per room, in join order.
    private var rooms: [String: [String]] = [:]
    /// Recording state per room, reported to joiners.
    private var recording: Set<String> = []

    let metrics = SignallingMetrics()

    public init(backend: any MediaBackend, verifier: any TokenVerifying, scheduler: any SignallingScheduler,
                graceSeconds: Double = 15, maxParticipantsPerRoom: Int = 100,
                logger: Logger = Logger(label: "parley.signalling"),
                clock: @escaping () -> Int = { Int(Date().timeIntervalSince1970) }) {
        self.backend = backend
        self.verifier = verifier
        self.scheduler = scheduler
        self.graceSeconds = graceSeconds
        self.maxParticipantsPerRoom = maxParticipantsPerRoom
        self.log = logger
        self.clock = clock
    }

    // MARK: Connection events

    public func connectionOpened(_ id: ConnectionID, transport: any SignallingTransport) {
        connections[id] = Connection(id: id, transport: transport)
        metrics.connections.inc()
        scheduler.schedule(afterSeconds: authTimeoutSeconds) { [weak self] in
            guard let self, let c = self.connections[id], c.participant == nil, !c.closed else { return }
            self.close(c, code: SignallingCloseCode.authTimeout, reason: "no auth within \(Int(self.authTimeoutSeconds)) s")
        }
    }

    /// The connection is gone (peer closed, error, or we closed it).
    public func connectionClosed(_ id: ConnectionID) {
        guard let c = connections.removeValue(forKey: id) else { return }
        metrics.connections.dec()
        c.closed = true
        guard let key = c.participant, let s = sessions[key], s.connection == id else { return }
        s.connection = nil
        s.generation += 1
        guard s.joined != nil else {
            sessions[key] = nil
            return
        }
        let gen = s.generation
        log.info("connection lost; keeping media session", ["room": .string(key.room), "participant": .string(key.id),
                                                           "grace_s": .double(graceSeconds)])
        scheduler.schedule(afterSeconds: graceSeconds) { [weak self] in
            guard let self, let s = self.sessions[key], s.connection == nil, s.generation == gen else { return }
            self.log.info("grace period over; removing participant", ["room": .string(key.room), "participant": .string(key.id)])
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
            if c.participant == nil { close(c, code: SignallingCloseCode.unauthorized, reason: "expected auth") }
            return
        }
        do {
            if let reply = try handle(message, on: c) { send(c, reply) }
        } catch {
            fail(c, id: message.id, error)
        }
    }

    /// Answers request `id` with an error (and closes the connection when the error says so).
    private func fail(_ c: Connection, id: JSONValue, _ error: SignallingError) {
        var e = error
        e.id = id
        if e.code != .badRequest { metrics.errors.inc() } else { metrics.badRequests.inc() }
        send(c, e.json)
        if let code = e.code.closeCode { close(c, code: code, reason: e.code.rawValue) }
    }

    // MARK: Requests

    /// The reply, or nil when it comes later (a join answers when the relay has).
    private func handle(_ m: ClientMessage, on c: Connection) throws(SignallingError) -> JSONValue? {
        if case .auth(let token, let room) = m.request { return try auth(token: token, room: room, id: m.id, on: c) }
        guard let key = c.participant, let s = sessions[key] else {
            throw SignallingError(.notAuthenticated, "the first message must be auth")
        }
        if s.joining, m.request != .ping {
            // Nothing else until the relay has answered the join.
            throw SignallingError(m.request.type == "join" ? .alreadyJoined : .notJoined, "a join is in progress: wait for its answer")
        }
        switch m.request {
        case .auth: fatalError("handled above")
        case .ping:
            // A receive-only tool (ffmpeg) sends nothing on its media port: its pings keep the media session.
            if s.joined != nil { backend.keepAlive(room: key.room, participant: key.id) }
            return signallingReply(id: m.id, type: "ping", ["time": JSONValue(clock())])
        case .join(let room, let publish, let subscribe, let suiteName):
            if let room, room != key.room {
                throw SignallingError(.wrongRoom, "this session is in room \"\(key.room)\", not \"\(room)\"")
            }
            guard s.joined == nil else { throw SignallingError(.alreadyJoined, "already joined \(key.room)") }
            if publish && !s.claims.canPublish { throw SignallingError(.forbidden, "this token may not publish") }
            var suite = SRTPSuite.default
            if let suiteName {
                guard let s = SRTPSuite(sdesName: suiteName) else {
                    throw SignallingError(.unsupported, "SRTP suite \(suiteName) is not supported (\(SRTPSuite.allCases.map(\.sdesName).joined(separator: ", ")))")
                }
                suite = s
            }
            let members = rooms[key.room] ?? []
            guard members.count < maxParticipantsPerRoom else {
                throw SignallingError(.roomFull, "room \(key.room) has \(members.count) participants, the maximum")
            }
            let keys = SRTPSessionKeys.random(suite)
            s.joining = true
            let generation = s.generation
            backend.join(room: key.room, participant: key.id, publish: publish, subscribe: subscribe, keys: keys) { [weak self] result in
                self?.joinAnswered(s, generation: generation, id: m.id, result.map {
                    Joined(publish: publish, subscribe: subscribe, keys: keys, grant: $0, joinedAt: 0)
                })
            }
            return nil
        case .leave:
            guard s.joined != nil else { throw SignallingError(.notJoined, "not in a room") }
            leaveMedia(s, reason: "left")
            return signallingReply(id: m.id, type: "leave")
        case .publish(let specs):
            guard var j = s.joined else { throw SignallingError(.notJoined, "join first") }
            guard j.publish else { throw SignallingError(.forbidden, "joined without publish") }
            var infos: [RoomTrack] = []
            for spec in specs {
                let ssrc = spec.ssrc ?? j.grant.ssrcs[spec.kind] ?? 0
                guard ssrc != 0, j.grant.ssrcs.values.contains(ssrc) else {
                    throw SignallingError(.badRequest, "SSRC \(spec.ssrc.map(String.init) ?? "for \(spec.kind.rawValue)") was not granted in join")
                }
                let id = RoomTrack.id(participant: key.id, ssrc: ssrc)
                guard j.tracks[id] == nil, !infos.contains(where: { $0.ssrc == ssrc }) else {
                    throw SignallingError(.badRequest, "SSRC \(ssrc) is already published")
                }
                var sp = spec
                sp.ssrc = ssrc
                infos.append(RoomTrack(participant: key.id, spec: sp, ssrc: ssrc, muted: false))
            }
            for t in infos {
                backend.publish(room: key.room, participant: key.id, track: t.spec, ssrc: t.ssrc)
                j.tracks[t.id] = t
            }
            s.joined = j
            for t in infos { broadcast(room: key.room, except: key.id, .trackPublished(t)) }
            return signallingReply(id: m.id, type: "publish", ["tracks": .array(infos.map(\.json))])
        case .unpublish(let track):
            guard var j = s.joined else { throw SignallingError(.notJoined, "join first") }
            guard let t = j.tracks.removeValue(forKey: track) else {
                throw SignallingError(.unknownTrack, "you have not published \(track)")
            }
            backend.unpublish(room: key.room, participant: key.id, ssrc: t.ssrc)
            s.joined = j
            dropSubscriptions(to: t, room: key.room)
            broadcast(room: key.room, except: key.id, .trackUnpublished(track: track, participant: key.id))
            return signallingReply(id: m.id, type: "unpublish", ["track": .string(track)])
        case .subscribe(let track):
            guard var j = s.joined else { throw SignallingError(.notJoined, "join first") }
            guard j.subscribe else { throw SignallingError(.forbidden, "joined without subscribe") }
            guard let t = findTrack(room: key.room, id: track) else { throw SignallingError(.unknownTrack, "no track \(track) in \(key.room)") }
            guard t.participant != key.id else { throw SignallingError(.badRequest, "cannot subscribe to your own track") }
            if let existing = j.subscriptions[track] {
                return signallingReply(id: m.id, type: "subscribe", ["track": t.json, "ssrc": JSONValue(existing)])
            }
            backend.subscribe(room: key.room, subscriber: key.id, publisher: t.participant, ssrc: t.ssrc)
            j.subscriptions[track] = t.ssrc
            s.joined = j
            return signallingReply(id: m.id, type: "subscribe", ["track": t.json, "ssrc": JSONValue(t.ssrc)])
        case .unsubscribe(let track):
            guard var j = s.joined else { throw SignallingError(.notJoined, "join first") }
            guard j.subscriptions.removeValue(forKey: track) != nil else {
                throw SignallingError(.unknownTrack, "not subscribed to \(track)")
            }
            if let t = findTrack(room: key.room, id: track) {
                backend.unsubscribe(room: key.room, subscriber: key.id, publisher: t.participant, ssrc: t.ssrc)
            }
            s.joined = j
            return signallingReply(id: m.id, type: "unsubscribe", ["track": .string(track)])
        case .mute(let track, let muted):
            guard var j = s.joined else { throw SignallingError(.notJoined, "join first") }
            guard var t = j.tracks[track] else { throw SignallingError(.unknownTrack, "you have not published \(track)") }
            if t.muted != muted {
                t.muted = muted
                j.tracks[track] = t
                s.joined = j
                backend.setMuted(room: key.room, participant: key.id, ssrc: t.ssrc, muted: muted)
                broadcast(room: key.room, except: key.id, .trackMuted(track: track, participant: key.id, muted: muted))
            }
            return signallingReply(id: m.id, type: "mute", ["track": .string(track), "muted": .bool(muted)])
        }
    }

    /// The media backend answered `s`'s join (request `id`). If the session
    /// has moved on meanwhile (its connection closed or was replaced, or it
    /// was kicked), the relay's participant is removed again, unless another
    /// session of that name exists by now: its own join replaces it there.
    private func joinAnswered(_ s: Session, generation: Int, id: JSONValue, _ result: Result<Joined, SignallingError>) {
        s.joining = false
        let key = s.key
        guard sessions[key] === s, s.generation == generation, let cid = s.connection, let c = connections[cid] else {
            if case .success = result, sessions[key] == nil || sessions[key] === s { backend.leave(room: key.room, participant: key.id) }
            return
        }
        switch result {
        case .failure(let e):
            fail(c, id: id, e)
        case .success(var j):
            j.joinedAt = clock()
            s.joined = j
            rooms[key.room, default: []].append(key.id)
            metrics.joins.inc()
            log.info("joined", ["room": .string(key.room), "participant": .string(key.id)])
            broadcast(room: key.room, except: key.id, .participantJoined(participant: key.id))
            send(c, signallingReply(id: id, type: "join", joinFields(s)))
        }
    }

    private func auth(token: String, room: String?, id: JSONValue, on c: Connection) throws(SignallingError) -> JSONValue {
        guard c.participant == nil else { throw SignallingError(.alreadyAuthenticated, "this connection is already authenticated") }
        let claims: AuthClaims
        switch verifier.verify(token) {
        case .success(let cl): claims = cl
        case .failure(let f):
            metrics.authFailures.inc()
            log.info("auth refused", ["reason": .string("\(f)")])
            throw f.signallingError
        }
        let resolved: String
        do { resolved = try claims.resolveRoom(requested: room) } catch {
            metrics.authFailures.inc()
            throw error
        }
        let key = ParticipantKey(room: resolved, id: claims.subject)
        var resumed = false
        if let s = sessions[key] {
            if let old = s.connection, let oc = connections[old] {
                oc.participant = nil
                close(oc, code: SignallingCloseCode.replaced, reason: "session resumed by another connection")
            }
            s.connection = c.id
            s.generation += 1
            s.claims = claims
            resumed = s.joined != nil
            if resumed { metrics.resumes.inc() }
        } else {
            let s = Session(key: key, claims: claims)
            s.connection = c.id
            sessions[key] = s
        }
        c.participant = key
        let s = sessions[key]!
        var fields: [String: JSONValue] = [
            "participant": .string(key.id), "room": .string(key.room), "resumed": .bool(resumed),
            "expiresAt": JSONValue(claims.expiresAt),
            "permissions": ["publish": .bool(claims.canPublish), "record": .bool(claims.canRecord), "admin": .bool(claims.isAdmin)],
        ]
        if resumed { fields["join"] = .object(joinFields(s)) }
        log.info(resumed ? "session resumed" : "authenticated", ["room": .string(key.room), "participant": .string(key.id)])
        return signallingReply(id: id, type: "auth", fields)
    }

    /// The fields of a join reply (also sent inside a resumed auth reply).
    private func joinFields(_ s: Session) -> [String: JSONValue] {
        guard let j = s.joined else { return [:] }
        var ssrcs: [String: JSONValue] = [:]
        for (k, v) in j.grant.ssrcs { ssrcs[k.rawValue] = JSONValue(v) }
        let others = (rooms[s.key.room] ?? []).filter { $0 != s.key.id }.compactMap { id -> JSONValue? in
            guard let o = sessions[ParticipantKey(room: s.key.room, id: id)], let oj = o.joined else { return nil }
            return ["id": .string(id), "tracks": .array(oj.tracks.values.sorted { $0.id < $1.id }.map(\.json))]
        }
        var media: [String: JSONValue] = ["protocol": "udp", "host": .string(j.grant.host), "port": JSONValue(j.grant.port)]
        if j.grant.timeoutSeconds > 0 { media["timeout"] = JSONValue(j.grant.timeoutSeconds) }
        return [
            "room": .string(s.key.room),
            "participant": .string(s.key.id),
            "media": .object(media),
            "ice": ["ufrag": .string(j.grant.iceUfrag), "pwd": .string(j.grant.icePassword),
                    "consentUfrag": .string(j.grant.consentUfrag), "consentPwd": .string(j.grant.consentPassword)],
            "ssrcs": .object(ssrcs),
            "srtp": j.keys.json,
            "participants": .array(others),
            "tracks": .array(j.tracks.values.sorted { $0.id < $1.id }.map(\.json)),
            "subscriptions": .object(j.subscriptions.mapValues { JSONValue($0) }),
            "recording": .bool(recording.contains(s.key.room)),
        ]
    }

    // MARK: Rooms

    private func findTrack(room: String, id: String) -> RoomTrack? {
        guard let slash = id.firstIndex(of: "/") else { return nil }
        let owner = String(id[..<slash])
        return sessions[ParticipantKey(room: room, id: owner)]?.joined?.tracks[id]
    }

    /// Subscribers of a track that went away forget it (the relay's
    /// unpublish or leave already ended the subscriptions).
    private func dropSubscriptions(to t: RoomTrack, room: String) {
        for id in rooms[room] ?? [] {
            guard let s = sessions[ParticipantKey(room: room, id: id)], var j = s.joined,
                  j.subscriptions.removeValue(forKey: t.id) != nil else { continue }
            s.joined = j
        }
    }

    /// Leaves the media session but keeps the signalling session.
    private func leaveMedia(_ s: Session, reason: String) {
        guard let j = s.joined else { return }
        for t in j.tracks.values { dropSubscriptions(to: t, room: s.key.room) }
        backend.leave(room: s.key.room, participant: s.key.id)
        s.joined = nil
        rooms[s.key.room]?.removeAll { $0 == s.key.id }
        if rooms[s.key.room]?.isEmpty == true { rooms[s.key.room] = nil; recording.remove(s.key.room) }
        metrics.leaves.inc()
        log.info("left", ["room": .string(s.key.room), "participant": .string(s.key.id), "reason": .string(reason)])
        broadcast(room: s.key.room, except: s.key.id, .participantLeft(participant: s.key.id, reason: reason))
    }

    private func removeSession(_ s: Session, reason: String) {
        leaveMedia(s, reason: reason)
        sessions[s.key] = nil
    }

    /// Sends `event` to every connected participant of `room` but `except`.
    public func broadcast(room: String, except: String? = nil, _ event: ServerEvent) {
        let text = event.json.serialized
        for id in rooms[room] ?? [] where id != except {
            guard let s = sessions[ParticipantKey(room: room, id: id)], let cid = s.connection,
                  let c = connections[cid], !c.closed else { continue }
            c.transport.send(text: text)
        }
    }

    // MARK: Admin

    /// Recording state changes come from the recorder; joiners see the flag.
    public func setRecording(room: String, _ on: Bool) {
        guard on != recording.contains(room) else { return }
        if on { recording.insert(room) } else { recording.remove(room) }
        broadcast(room: room, on ? .recordingStarted(room: room) : .recordingStopped(room: room))
    }

    /// The relay removed a participant that sent nothing for its timeout: the
    /// session ends as if it had left (reason `media_timeout`); its
    /// connection, if any, stays and may join again.
    public func mediaTimedOut(room: String, participant: String) {
        guard let s = sessions[ParticipantKey(room: room, id: participant)], s.joined != nil else { return }
        leaveMedia(s, reason: "media_timeout")
        if let cid = s.connection, let c = connections[cid] {
            send(c, ServerEvent.participantLeft(participant: participant, reason: "media_timeout").json)
        } else {
            sessions[s.key] = nil
        }
    }

    /// Removes a participant now (admin kick). Returns false when not found.
    public func kick(room: String, participant: String) -> Bool {
        let key = ParticipantKey(room: room, id: participant)
        guard let s = sessions[key] else { return false }
        if let cid = s.connection, let c = connections[cid] {
            c.participant = nil
            close(c, code: SignallingCloseCode.kicked, reason: "removed by an administrator")
        }
        removeSession(s, reason: "kicked")
        return true
    }

    /// The admin view of every room (GET /admin/rooms).
    public func roomsJSON() -> JSONValue {
        var list: [JSONValue] = []
        for room in rooms.keys.sorted() {
            let members = (rooms[room] ?? []).compactMap { id -> JSONValue? in
                guard let s = sessions[ParticipantKey(room: room, id: id)], let j = s.joined else { return nil }
                return [
                    "id": .string(id), "connected": .bool(s.connection != nil), "joinedAt": JSONValue(j.joinedAt),
                    "publish": .bool(j.publish), "subscribe": .bool(j.subscribe),
                    "media": .string("\(j.grant.host):\(j.grant.port)"),
                    "tracks": .array(j.tracks.values.sorted { $0.id < $1.id }.map(\.json)),
                    "subscriptions": .array(j.subscriptions.keys.sorted().map { .string($0) }),
                ]
            }
            list.append(["room": .string(room), "participants": .array(members), "recording": .bool(recording.contains(room))])
        }
        return ["rooms": .array(list)]
    }

    public var connectionCount: Int { connections.count }
    public var participantCount: Int { rooms.values.reduce(0) { $0 + $1.count } }

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
