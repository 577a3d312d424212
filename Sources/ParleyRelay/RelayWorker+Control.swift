import ParleyRTP
import ParleyCore
import ParleyIO

/// The control operations `Relay` posts to this loop, one `execute` each.
/// Each runs to the end on the loop and returns its answer; none waits for
/// anything. Loop only.
extension RelayWorker {
    /// Number of rooms on this loop.
    public var roomCount: Int { rooms.count }

    /// Whether this loop carries `room`.
    func carries(_ room: String) -> Bool { rooms[room] != nil }

    /// A whole join in one step: opens the room if this loop does not carry
    /// it yet, adds participant `name` with the SSRCs of `tracks` granted
    /// (a participant of that name already in the room is replaced),
    /// installs its SRTP hooks, and answers with the grant. A failed join
    /// leaves no room it opened behind.
    func join(room: String, name: String, tracks: [TrackDescription], crypto: ParticipantCrypto?,
              webrtc: WebRTCTransport? = nil) -> Result<ParticipantGrant, RelayError> {
        loop.preconditionInLoop()
        let r: Room
        if let existing = rooms[room] {
            r = existing
        } else {
            guard !room.isEmpty, room.utf8.count <= 128 else {
                directory.forget(room, loop: index)
                return .failure(.invalidRequest("room names are 1-128 bytes"))
            }
            guard rooms.count < config.maxRoomsPerLoop else {
                directory.forget(room, loop: index)
                return .failure(.tooManyRooms(limit: config.maxRoomsPerLoop))
            }
            r = Room(name: room, config: config, participantsGauge: metrics.roomGauge(room))
            rooms[room] = r
            metrics.rooms.inc()
        }
        if let old = r.participant(named: name) { remove(old) }
        var ufrag = Credentials.random(8)
        while byUfrag[ufrag] != nil { ufrag = Credentials.random(8) }
        let p: Participant
        do {
            // The consent ufrag has 16 characters: never one of the relay's 8-character
            // ufrags, so a consent check reflected back at the relay authenticates as nobody.
            // A WebRTC participant's consent checks use its own ICE credentials (from its SDP).
            p = try r.addParticipant(name: name, ufrag: ufrag, password: Credentials.random(24),
                                     consentUfrag: webrtc?.remoteUfrag ?? Credentials.random(16),
                                     consentPassword: webrtc?.remotePassword ?? Credentials.random(24),
                                     tracks: tracks, nowMs: MonotonicTime.now().milliseconds)
            p.crypto = crypto
            if let webrtc { try attachWebRTC(p, webrtc) }
        } catch {
            if let p = r.participant(named: name) { r.removeParticipant(p) }
            closeIfEmpty(r)
            return .failure(error)
        }
        byUfrag[ufrag] = p
        metrics.participants.inc()
        let granted = p.granted.map { RoomTrack(participant: name, spec: $0, ssrc: $0.ssrc!, muted: false) }
        var g = ParticipantGrant(name: name, room: room, loopIndex: index, endpoint: endpoint, ufrag: p.ufrag,
                                 password: p.password, consentUfrag: p.consentUfrag,
                                 consentPassword: p.consentPassword, tracks: granted)
        g.tcpEndpoint = tcpEndpoint
        return .success(g)
    }

    /// Removes a participant; the room closes with its last one.
    func leave(room: String, name: String) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        return participant(room, name).map { p in
            remove(p)
            closeIfEmpty(p.room)
        }
    }

    /// Closes a room, removing its participants.
    func closeRoom(_ name: String) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[name] else { return .failure(.noSuchRoom(name)) }
        close(r)
        return .success(())
    }

    func closeIfEmpty(_ r: Room) {
        if r.participants.isEmpty, rooms[r.name] === r { close(r) }
    }

    private func close(_ r: Room) {
        for p in r.participants { remove(p) }
        rooms[r.name] = nil
        metrics.rooms.dec()
        directory.forget(r.name, loop: index)
        r.tap?.event?(.closed)
        r.tap = nil
    }

    /// Publishes a track on an SSRC granted to participant `name`.
    func publish(room: String, name: String, track: TrackDescription) -> Result<RoomTrack, RelayError> {
        loop.preconditionInLoop()
        return participant(room, name).flatMap { p in
            Result { () throws(RelayError) in try p.room.publish(p, track).info }
        }
    }

    /// Ends participant `name`'s track `ssrc` (subscriptions and ring included).
    func unpublish(room: String, name: String, ssrc: UInt32) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        return participant(room, name).flatMap { p in
            guard let t = p.publishedTrack(ssrc) else { return .failure(.noSuchTrack(ssrc)) }
            p.room.unpublish(t)
            return .success(())
        }
    }

    /// Starts or stops delivery of track `ssrc` to participant `subscriber`.
    func setSubscribed(room: String, subscriber: String, ssrc: UInt32, _ subscribed: Bool) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        return participant(room, subscriber).flatMap { p in
            do throws(RelayError) { try p.room.setSubscribed(p, ssrc: ssrc, subscribed) } catch { return .failure(error) }
            if subscribed, p.address != nil, let t = p.room.tracksBySSRC[ssrc], t.kind == .video {
                tickClock()
                requestKeyframe(t, fir: false) // the new subscriber's decoder needs one
                flush()
            }
            return .success(())
        }
    }

    /// Which layer of simulcast track `ssrc` `subscriber` receives (clamped
    /// to the track's layers); it moves at that layer's next keyframe, which is asked for.
    func setLayer(room: String, subscriber: String, ssrc: UInt32, layer: Int) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        return participant(room, subscriber).flatMap { p in
            guard let t = p.room.tracksBySSRC[ssrc], let sc = t.simulcast, let choice = t.layerChoice(for: p) else {
                return .failure(.noSuchTrack(ssrc))
            }
            choice.target = min(max(layer, 0), sc.rids.count - 1)
            tickClock()
            let wanted = sc.effective(target: choice.target, nowMs: nowMs)
            if choice.current != wanted {
                requestKeyframe(t, fir: false, layer: wanted)
                flush()
            }
            return .success(())
        }
    }

    /// Publisher-side mute of track `ssrc` (nothing is forwarded while muted).
    func setMuted(room: String, ssrc: UInt32, _ muted: Bool) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        return Result { () throws(RelayError) in try r.setMuted(ssrc: ssrc, muted) }
    }

    /// Starts (or with nil stops) the room's recorder tap.
    func setTap(room: String, _ tap: RTPTap?) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        r.setTap(tap)
        return .success(())
    }

    /// Counts as activity from the participant (see `Relay.keepAlive`).
    func keepAlive(room: String, name: String) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        return participant(room, name).map { $0.lastSeenMs = MonotonicTime.now().milliseconds }
    }

    /// A snapshot of a room.
    func stats(room: String) -> Result<RoomStats, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        var s = r.stats(loopIndex: index)
        for i in s.participants.indices {
            if let a = r.participant(named: s.participants[i].name)?.address, a.isRelayTCP { s.participants[i].address = describe(a) }
        }
        return .success(s)
    }

    /// Latches `address` for a participant without STUN: for trusted
    /// in-process callers only (the bench, which drives fixed addresses).
    func latchForTrustedCaller(room: String, name: String, address: SocketAddress) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        return participant(room, name).map { p in
            tickClock()
            latch(p, address)
            flush()
        }
    }

    func participant(_ room: String, _ name: String) -> Result<Participant, RelayError> {
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        guard let p = r.participant(named: name) else { return .failure(.noSuchParticipant(name)) }
        return .success(p)
    }
}
