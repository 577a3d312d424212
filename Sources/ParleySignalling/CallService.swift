import ParleyRTP
import ParleyProtocol
import ParleyAuth
import ParleyCore
import ParleySRTP
import ParleySDP

/// Calls: the feature that answers `join`, `leave`, `publish`, `unpublish`,
/// `subscribe`, `unsubscribe` and `mute`, keeps room membership and the
/// recording flag, and serves the admin room view and kick. Media goes
/// through the `MediaBackend` (the relay).
///
/// A join is answered when the media backend answers (one hop to the room's
/// loop and back); meanwhile the device is joining and refuses other media
/// requests. The other media requests are posted to the backend and
/// answered at once.
///
/// A device of a user is in at most one room; a user is in a room with one
/// device at a time, as participant `user` (the token's `sub`). The media
/// session of a device is what holds its signalling session through the
/// grace period.
///
/// Confined to the signalling thread, like the core it is registered with.
public final class CallService: SignallingFeature {
    struct Joined {
        var room: String
        var publish: Bool
        var subscribe: Bool
        /// SDES keys; nil for a WebRTC peer (its keys come from DTLS).
        var keys: SRTPSessionKeys?
        /// A WebRTC peer's SDP answer, its latest offer, the server's DTLS
        /// fingerprint, and which subscribed track goes out on which section (mid → track id).
        var answer: String?
        var offer: WebRTCOffer?
        var fingerprint: String?
        var sections: [String: String] = [:]
        /// Subscribed track ids in the order they were subscribed (sections are given in that order).
        var subscriptionOrder: [String] = []
        var grant: MediaGrant
        /// What an SDES client asked its media to go over (`transport` in `join`).
        var transport: ICECandidate.Transport = .udp
        /// Published tracks by id.
        var tracks: [String: RoomTrack] = [:]
        /// Subscribed track id → SSRC the subscriber receives.
        var subscriptions: [String: UInt32] = [:]
        var joinedAt: Int
    }

    public let backend: any MediaBackend
    public var maxParticipantsPerRoom: Int
    unowned let core: SignallingCore

    /// The media session of each joined device.
    private var calls: [SessionKey: Joined] = [:]
    /// Devices whose join the backend has not answered yet, with the room.
    private var joining: [SessionKey: String] = [:]
    /// Joined devices per room, in join order.
    private var rooms: [String: [SessionKey]] = [:]
    /// Recording state per room, reported to joiners.
    private var recording: Set<String> = []

    let metrics = SignallingMetrics()

    /// Called when a room's call opens (its first member joined; before that
    /// member's join reply) and when it closes (its last member left).
    /// The recording feature listens (automatic recording, stop on close).
    public var onRoomOpened: ((String) -> Void)?
    public var onRoomClosed: ((String) -> Void)?

    /// Creates the service and registers it with `core`.
    public init(core: SignallingCore, backend: any MediaBackend, maxParticipantsPerRoom: Int = 100) {
        self.core = core
        self.backend = backend
        self.maxParticipantsPerRoom = maxParticipantsPerRoom
        core.register(self)
    }

    // MARK: SignallingFeature

    public var messageTypes: [String] { CallRequest.types }

    public func handle(_ request: ClientRequest, from session: SignallingSession, reply: SignallingReply) {
        do throws(SignallingError) {
            let r = try CallRequest(request)
            if joining[session.key] != nil {
                // Nothing else until the relay has answered the join.
                switch r {
                case .join, .offer: throw SignallingError(.alreadyJoined, "a join is in progress: wait for its answer")
                default: throw SignallingError(.notJoined, "a join is in progress: wait for its answer")
                }
            }
            if case .join(let room, let publish, let subscribe, let suite, let transport) = r {
                guard let t = ICECandidate.Transport(rawValue: transport ?? "udp") else {
                    throw SignallingError(.badRequest, "transport must be udp or tcp")
                }
                try join(room: room, publish: publish, subscribe: subscribe, suite: suite, transport: t, from: session, reply: reply)
            } else if case .offer(let room, let sdp) = r {
                let offer: WebRTCOffer
                do { offer = try WebRTCOffer(parsing: sdp) } catch { throw SignallingError(.badRequest, "sdp: \(error.reason)") }
                if calls[session.key] != nil {
                    reply.ok(try renegotiate(offer, room: room, from: session))
                    return
                }
                try join(room: room, publish: true, subscribe: true, suite: nil, offer: offer, from: session, reply: reply)
            } else {
                reply.ok(try handle(r, from: session))
            }
        } catch {
            reply.fail(error)
        }
    }

    /// A resumed device gets its media session back in the `auth` reply,
    /// unless the new token may not be in that room.
    public func authenticated(_ session: SignallingSession) -> [String: JSONValue] {
        guard let j = calls[session.key] else { return [:] }
        guard session.claims.mayJoin(j.room) else {
            leaveMedia(session.key, reason: "left")
            return [:]
        }
        return ["join": .object(joinFields(session.key))]
    }

    public func holds(_ session: SignallingSession) -> Bool { calls[session.key] != nil }

    public func pinged(_ session: SignallingSession) {
        if let j = calls[session.key] { backend.keepAlive(room: j.room, participant: session.user) }
    }

    public func sessionEnded(_ session: SignallingSession, reason: String) {
        leaveMedia(session.key, reason: reason)
    }

    // MARK: Requests

    private func handle(_ r: CallRequest, from s: SignallingSession) throws(SignallingError) -> [String: JSONValue] {
        let key = s.key
        let user = key.user
        switch r {
        case .join, .offer: fatalError("answered by join(…)")
        case .leave:
            guard calls[key] != nil else { throw SignallingError(.notJoined, "not in a room") }
            leaveMedia(key, reason: "left")
            return [:]
        case .publish(let specs):
            guard var j = calls[key] else { throw SignallingError(.notJoined, "join first") }
            guard j.publish else { throw SignallingError(.forbidden, "joined without publish") }
            var infos: [RoomTrack] = []
            for spec in specs {
                let ssrc = spec.ssrc ?? j.grant.ssrcs[spec.kind] ?? 0
                guard ssrc != 0, j.grant.ssrcs.values.contains(ssrc) else {
                    throw SignallingError(.badRequest, "SSRC \(spec.ssrc.map(String.init) ?? "for \(spec.kind.rawValue)") was not granted in join")
                }
                let id = RoomTrack.id(participant: user, ssrc: ssrc)
                guard j.tracks[id] == nil, !infos.contains(where: { $0.ssrc == ssrc }) else {
                    throw SignallingError(.badRequest, "SSRC \(ssrc) is already published")
                }
                var sp = spec
                sp.ssrc = ssrc
                infos.append(RoomTrack(participant: user, spec: sp, ssrc: ssrc, muted: false))
            }
            for t in infos {
                backend.publish(room: j.room, participant: user, track: t.spec, ssrc: t.ssrc)
                j.tracks[t.id] = t
            }
            calls[key] = j
            for t in infos { broadcast(room: j.room, except: user, .trackPublished(t)) }
            return ["tracks": .array(infos.map(\.json))]
        case .unpublish(let track):
            guard var j = calls[key] else { throw SignallingError(.notJoined, "join first") }
            guard let t = j.tracks.removeValue(forKey: track) else {
                throw SignallingError(.unknownTrack, "you have not published \(track)")
            }
            backend.unpublish(room: j.room, participant: user, ssrc: t.ssrc)
            calls[key] = j
            dropSubscriptions(to: t, room: j.room)
            broadcast(room: j.room, except: user, .trackUnpublished(track: track, participant: user))
            return ["track": .string(track)]
        case .subscribe(let track):
            guard var j = calls[key] else { throw SignallingError(.notJoined, "join first") }
            guard j.subscribe else { throw SignallingError(.forbidden, "joined without subscribe") }
            guard let t = findTrack(room: j.room, id: track) else { throw SignallingError(.unknownTrack, "no track \(track) in \(j.room)") }
            guard t.participant != user else { throw SignallingError(.badRequest, "cannot subscribe to your own track") }
            if let existing = j.subscriptions[track] {
                return ["track": t.json, "ssrc": JSONValue(existing)]
            }
            backend.subscribe(room: j.room, subscriber: user, publisher: t.participant, ssrc: t.ssrc)
            j.subscriptions[track] = t.ssrc
            j.subscriptionOrder.append(track)
            calls[key] = j
            return ["track": t.json, "ssrc": JSONValue(t.ssrc)]
        case .unsubscribe(let track):
            guard var j = calls[key] else { throw SignallingError(.notJoined, "join first") }
            j.subscriptionOrder.removeAll { $0 == track }
            guard j.subscriptions.removeValue(forKey: track) != nil else {
                throw SignallingError(.unknownTrack, "not subscribed to \(track)")
            }
            if let t = findTrack(room: j.room, id: track) {
                backend.unsubscribe(room: j.room, subscriber: user, publisher: t.participant, ssrc: t.ssrc)
            }
            calls[key] = j
            return ["track": .string(track)]
        case .quality(let track, let quality):
            guard let j = calls[key] else { throw SignallingError(.notJoined, "join first") }
            guard j.subscriptions[track] != nil, let t = findTrack(room: j.room, id: track) else {
                throw SignallingError(.unknownTrack, "not subscribed to \(track)")
            }
            let layers = t.spec.rids.count
            guard layers > 1 else { throw SignallingError(.badRequest, "\(track) is not a simulcast track") }
            let layer = quality == "low" ? 0 : quality == "high" ? layers - 1 : layers / 2
            backend.setLayer(room: j.room, subscriber: user, ssrc: t.ssrc, layer: layer)
            return ["track": .string(track), "quality": .string(quality), "rid": .string(t.spec.rids[layer])]
        case .mute(let track, let muted):
            guard var j = calls[key] else { throw SignallingError(.notJoined, "join first") }
            guard var t = j.tracks[track] else { throw SignallingError(.unknownTrack, "you have not published \(track)") }
            if t.muted != muted {
                t.muted = muted
                j.tracks[track] = t
                calls[key] = j
                backend.setMuted(room: j.room, participant: user, ssrc: t.ssrc, muted: muted)
                broadcast(room: j.room, except: user, .trackMuted(track: track, participant: user, muted: muted))
            }
            return ["track": .string(track), "muted": .bool(muted)]
        }
    }

    /// A joined WebRTC peer offers again (client-initiated renegotiation,
    /// docs/protocol.md): same ICE credentials and certificate; the answer
    /// gives each subscribed track a receiving section of its kind (kept
    /// where it already had one, else the first free one in order) and
    /// announces its SSRC there. What the new offer would send beyond the
    /// join's tracks is not published (a new join does that).
    private func renegotiate(_ offer: WebRTCOffer, room: String?, from s: SignallingSession) throws(SignallingError) -> [String: JSONValue] {
        guard var j = calls[s.key], let previous = j.offer, let fingerprint = j.fingerprint else {
            throw SignallingError(.alreadyJoined, "already joined \(calls[s.key]?.room ?? "") without WebRTC")
        }
        if let room, room != j.room { throw SignallingError(.alreadyJoined, "already joined \(j.room)") }
        guard offer.iceUfrag == previous.iceUfrag, offer.icePassword == previous.icePassword,
              offer.fingerprint.uppercased() == previous.fingerprint.uppercased() else {
            throw SignallingError(.unsupported, "an ICE restart or a new certificate needs a new join")
        }
        // Receiving sections by kind, in order.
        var free: [String: [String]] = [:]
        for sec in offer.sections where sec.codec != nil && (sec.direction == .sendrecv || sec.direction == .recvonly) {
            free[sec.kind, default: []].append(sec.mid)
        }
        var sections: [String: String] = [:]
        var placed = Set<String>()
        // Keep what still fits, then place the rest in subscription order.
        for (mid, track) in j.sections.sorted(by: { $0.key < $1.key }) where j.subscriptions[track] != nil {
            guard let t = findTrack(room: j.room, id: track), let i = free[t.spec.kind.rawValue]?.firstIndex(of: mid) else { continue }
            free[t.spec.kind.rawValue]!.remove(at: i)
            sections[mid] = track
            placed.insert(track)
        }
        for track in j.subscriptionOrder where !placed.contains(track) {
            guard let t = findTrack(room: j.room, id: track), var list = free[t.spec.kind.rawValue], !list.isEmpty else { continue }
            sections[list.removeFirst()] = track
            free[t.spec.kind.rawValue] = list
        }
        var sending: [String: (ssrc: UInt32, stream: String)] = [:]
        for (mid, track) in sections {
            guard let t = findTrack(room: j.room, id: track) else { continue }
            sending[mid] = (t.ssrc, Self.msidToken(t.participant))
        }
        let answer = offer.answer(ufrag: j.grant.iceUfrag, password: j.grant.icePassword, fingerprint: fingerprint,
                                  host: j.grant.host, port: j.grant.port, sessionID: UInt64.random(in: 1..<(1 << 62)),
                                  canSend: j.subscribe, canReceive: j.publish, sending: sending,
                                  candidates: j.grant.sdpCandidates)
        j.offer = offer
        j.sections = sections
        j.answer = answer
        calls[s.key] = j
        return ["sdp": .string(answer), "sections": .object(sections.mapValues { .string($0) })]
    }

    /// A participant name as an msid stream id (RFC 8830 token characters).
    static func msidToken(_ name: String) -> String {
        String(name.unicodeScalars.map { c -> Character in
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "-_.".unicodeScalars.contains(c)) ? Character(c) : "-"
        })
    }

    /// Sends the join to the backend; `reply` is answered when it answers.
    private func join(room requested: String?, publish requestedPublish: Bool, subscribe: Bool, suite suiteName: String?,
                      transport: ICECandidate.Transport = .udp, offer: WebRTCOffer? = nil, from s: SignallingSession, reply: SignallingReply) throws(SignallingError) {
        // A WebRTC peer publishes what its offer sends when its token may publish.
        let publish = offer == nil ? requestedPublish : requestedPublish && s.claims.canPublish
        let key = s.key
        let user = key.user
        let room: String
        if let requested {
            guard s.claims.mayJoin(requested) else {
                throw SignallingError(.wrongRoom, "this session is in room \"\(s.room ?? "")\", not \"\(requested)\"")
            }
            room = requested
        } else {
            guard let r = s.room else {
                throw SignallingError(.badRequest, "this token is valid for any room: name one in \"room\"")
            }
            room = r
        }
        if let j = calls[key] { throw SignallingError(.alreadyJoined, "already joined \(j.room)") }
        if member(room: room, user: user) != nil || joining.contains(where: { $0.key.user == user && $0.value == room }) {
            throw SignallingError(.alreadyJoined, "\(user) is in \(room) from another device")
        }
        if publish && !s.claims.canPublish { throw SignallingError(.forbidden, "this token may not publish") }
        var suite = SRTPSuite.default
        if let suiteName {
            guard let s = SRTPSuite(sdesName: suiteName) else {
                throw SignallingError(.unsupported, "SRTP suite \(suiteName) is not supported (\(SRTPSuite.allCases.map(\.sdesName).joined(separator: ", ")))")
            }
            suite = s
        }
        let members = rooms[room] ?? []
        guard members.count < maxParticipantsPerRoom else {
            throw SignallingError(.roomFull, "room \(room) has \(members.count) participants, the maximum")
        }
        joining[key] = room
        let generation = s.generation
        if let offer {
            let answered = core.onSignallingThread { [weak self] (result: Result<WebRTCGrant, SignallingError>) in
                self?.joinAnswered(s, generation: generation, reply: reply, result.map {
                    Joined(room: room, publish: publish, subscribe: subscribe, keys: nil, answer: $0.answer, offer: offer,
                           fingerprint: $0.fingerprint, grant: $0.media,
                           tracks: Dictionary(uniqueKeysWithValues: $0.tracks.map { t in
                               let rt = RoomTrack(participant: user, spec: t, ssrc: t.ssrc!, muted: false)
                               return (rt.id, rt)
                           }), joinedAt: 0)
                })
            }
            backend.joinWebRTC(room: room, participant: user, offer: offer, publish: publish, subscribe: subscribe, completion: answered)
            return
        }
        let keys = SRTPSessionKeys.random(suite)
        let answered = core.onSignallingThread { [weak self] (result: Result<MediaGrant, SignallingError>) in
            self?.joinAnswered(s, generation: generation, reply: reply, result.map {
                Joined(room: room, publish: publish, subscribe: subscribe, keys: keys, grant: $0, transport: transport, joinedAt: 0)
            })
        }
        backend.join(room: room, participant: user, publish: publish, subscribe: subscribe, keys: keys, completion: answered)
    }

    /// The media backend answered `s`'s join. If the session has moved on
    /// meanwhile (its connection closed or was replaced, or it was kicked),
    /// the relay's participant is removed again, unless another session of
    /// that device exists by now: its own join replaces it there.
    private func joinAnswered(_ s: SignallingSession, generation: Int, reply: SignallingReply, _ result: Result<Joined, SignallingError>) {
        let key = s.key
        joining[key] = nil
        let current = core.session(key)
        guard current === s, s.generation == generation, s.isConnected else {
            if case .success(let j) = result, current == nil || current === s { backend.leave(room: j.room, participant: key.user) }
            return
        }
        switch result {
        case .failure(let e):
            reply.fail(e)
        case .success(let j) where j.transport == .tcp && !j.grant.candidates.contains(where: { $0.transport == .tcp }):
            backend.leave(room: j.room, participant: key.user)
            reply.fail(SignallingError(.unsupported, "media over TCP is off on this server (media-tcp-ports)"))
        case .success(var j):
            j.joinedAt = core.clock()
            calls[key] = j
            let opened = rooms[j.room] == nil
            rooms[j.room, default: []].append(key)
            metrics.joins.inc()
            core.log.info("joined", ["room": .string(j.room), "participant": .string(key.user)])
            if opened { onRoomOpened?(j.room) }
            broadcast(room: j.room, except: key.user, .participantJoined(participant: key.user))
            // A WebRTC peer's offered tracks are published by its join: the relay took them as its grants.
            if j.answer != nil {
                for t in j.tracks.values.sorted(by: { $0.id < $1.id }) {
                    backend.publish(room: j.room, participant: key.user, track: t.spec, ssrc: t.ssrc)
                    broadcast(room: j.room, except: key.user, .trackPublished(t))
                }
            }
            reply.ok(joinFields(key))
        }
    }

    /// The fields of a join reply (also sent inside a resumed auth reply).
    private func joinFields(_ key: SessionKey) -> [String: JSONValue] {
        guard let j = calls[key] else { return [:] }
        var ssrcs: [String: JSONValue] = [:]
        for (k, v) in j.grant.ssrcs { ssrcs[k.rawValue] = JSONValue(v) }
        let others = (rooms[j.room] ?? []).filter { $0 != key }.compactMap { other -> JSONValue? in
            guard let oj = calls[other] else { return nil }
            return ["id": .string(other.user), "tracks": .array(oj.tracks.values.sorted { $0.id < $1.id }.map(\.json))]
        }
        var media: [String: JSONValue] = ["protocol": "udp", "host": .string(j.grant.host), "port": JSONValue(j.grant.port)]
        // Asked for TCP: the TCP endpoint of the grant's address family comes first.
        if j.transport == .tcp, let c = j.grant.candidates.first(where: { $0.transport == .tcp && $0.isIPv6 == j.grant.host.contains(":") })
            ?? j.grant.candidates.first(where: { $0.transport == .tcp }) {
            media = ["protocol": "tcp", "host": .string(c.host), "port": JSONValue(c.port)]
        }
        if !j.grant.candidates.isEmpty {
            media["candidates"] = .array(j.grant.candidates.map {
                ["protocol": .string($0.transport.rawValue), "host": .string($0.host), "port": JSONValue($0.port)]
            })
        }
        if j.grant.timeoutSeconds > 0 { media["timeout"] = JSONValue(j.grant.timeoutSeconds) }
        var fields: [String: JSONValue] = [
            "room": .string(j.room),
            "participant": .string(key.user),
            "media": .object(media),
            "ice": ["ufrag": .string(j.grant.iceUfrag), "pwd": .string(j.grant.icePassword),
                    "consentUfrag": .string(j.grant.consentUfrag), "consentPwd": .string(j.grant.consentPassword)],
            "ssrcs": .object(ssrcs),

            "participants": .array(others),
            "tracks": .array(j.tracks.values.sorted { $0.id < $1.id }.map(\.json)),
            "subscriptions": .object(j.subscriptions.mapValues { JSONValue($0) }),
            "recording": .bool(recording.contains(j.room)),
        ]
        if let k = j.keys { fields["srtp"] = k.json }
        if let a = j.answer { fields["sdp"] = .string(a) }
        return fields
    }

    // MARK: Rooms

    /// Whether `room` has a call (someone joined it).
    public func hasCall(_ room: String) -> Bool { rooms[room] != nil }

    /// The room a device is in, if it joined one.
    public func room(of key: SessionKey) -> String? { calls[key]?.room }

    /// The device through which `user` is in `room`.
    private func member(room: String, user: String) -> SessionKey? {
        rooms[room]?.first { $0.user == user }
    }

    private func findTrack(room: String, id: String) -> RoomTrack? {
        guard let slash = id.firstIndex(of: "/"), let owner = member(room: room, user: String(id[..<slash])) else { return nil }
        return calls[owner]?.tracks[id]
    }

    /// Subscribers of a track that went away forget it (the relay's
    /// unpublish or leave already ended the subscriptions), in their order of
    /// subscriptions too: a re-offer must not announce it, even once the
    /// same SSRC is published again.
    private func dropSubscriptions(to t: RoomTrack, room: String) {
        for key in rooms[room] ?? [] {
            guard var j = calls[key], j.subscriptions.removeValue(forKey: t.id) != nil else { continue }
            j.subscriptionOrder.removeAll { $0 == t.id }
            calls[key] = j
        }
    }

    /// Leaves the media session but keeps the signalling session.
    private func leaveMedia(_ key: SessionKey, reason: String) {
        guard let j = calls[key] else { return }
        for t in j.tracks.values { dropSubscriptions(to: t, room: j.room) }
        backend.leave(room: j.room, participant: key.user)
        calls[key] = nil
        rooms[j.room]?.removeAll { $0 == key }
        if rooms[j.room]?.isEmpty == true {
            rooms[j.room] = nil
            recording.remove(j.room)
            onRoomClosed?(j.room)
        }
        metrics.leaves.inc()
        core.log.info("left", ["room": .string(j.room), "participant": .string(key.user), "reason": .string(reason)])
        broadcast(room: j.room, except: key.user, .participantLeft(participant: key.user, reason: reason))
    }

    /// Sends `event` to every connected participant of `room` but `except`.
    public func broadcast(room: String, except: String? = nil, _ event: ServerEvent) {
        let text = event.json.serialized
        for key in rooms[room] ?? [] where key.user != except { core.send(text: text, to: key) }
    }

    // MARK: Admin and relay events

    /// Recording state changes come from the recording feature; joiners see the flag.
    public func setRecording(room: String, _ on: Bool) {
        guard on != recording.contains(room) else { return }
        if on { recording.insert(room) } else { recording.remove(room) }
        broadcast(room: room, on ? .recordingStarted(room: room) : .recordingStopped(room: room))
    }

    /// The relay removed a participant that sent nothing for its timeout: the
    /// media session ends as if it had left (reason `media_timeout`); its
    /// connection, if any, stays and may join again.
    /// `reason` `transport_failed`: a WebRTC peer's DTLS handshake failed or timed out.
    public func mediaTimedOut(room: String, participant: String, reason: String = "media_timeout") {
        guard let key = member(room: room, user: participant) else { return }
        leaveMedia(key, reason: reason)
        if core.session(key)?.isConnected == true {
            core.send(.participantLeft(participant: participant, reason: reason), to: key)
        } else {
            core.endSession(key, reason: reason)
        }
    }

    /// Removes a participant now (admin kick), also one still joining: its
    /// connection is closed (4005) and its session ends. Returns false when
    /// not found.
    public func kick(room: String, participant: String) -> Bool {
        guard let key = member(room: room, user: participant)
                ?? joining.first(where: { $0.key.user == participant && $0.value == room })?.key else { return false }
        core.endSession(key, reason: "kicked", close: (SignallingCloseCode.kicked, "removed by an administrator"))
        return true
    }

    /// The admin view of every room (GET /admin/rooms).
    public func roomsJSON() -> JSONValue {
        var list: [JSONValue] = []
        for room in rooms.keys.sorted() {
            let members = (rooms[room] ?? []).compactMap { key -> JSONValue? in
                guard let j = calls[key] else { return nil }
                return [
                    "id": .string(key.user), "connected": .bool(core.session(key)?.isConnected == true), "joinedAt": JSONValue(j.joinedAt),
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

    public var participantCount: Int { rooms.values.reduce(0) { $0 + $1.count } }
}
