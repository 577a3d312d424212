import ParleyProtocol
import ParleyAuth
import Foundation
import ParleyCore
import ParleyRelay
import ParleySRTP
import Synchronization

/// The signalling layer's view of the relay (`MediaBackend` over
/// `ParleyRelay.Relay`), with hop-by-hop SRTP: each participant gets an
/// inbound context keyed with its `send` key (the relay unprotects what it
/// publishes) and an outbound context keyed with its `receive` key (the relay
/// protects what it forwards to it), installed as the relay's per-participant
/// crypto hook (`ParticipantCrypto.srtp`, in ParleyRelay).
///
/// Called on the signalling queue only (the blocking relay calls hop to the
/// room's loop; the queue is never a loop thread).
public final class RelayMediaBackend: MediaBackend, @unchecked Sendable {
    public let relay: Relay
    /// Host advertised in join replies (the relay's endpoint host otherwise).
    let advertisedHost: String?
    /// room → participant name → relay id.
    private var ids: [String: [String: ParticipantID]] = [:]
    /// relay id → (room, name), for relay events.
    private let names = Mutex<[ParticipantID: (room: String, name: String)]>([:])
    private let metrics = SRTPMetrics.shared

    public init(relay: Relay, advertisedHost: String? = nil) {
        self.relay = relay
        self.advertisedHost = advertisedHost
    }

    /// The signalling name of a relay participant (for `RelayEvent`s). Any thread.
    public func name(of id: ParticipantID) -> (room: String, name: String)? { names.withLock { $0[id] } }

    public func join(room: String, participant: String, publish: Bool, subscribe: Bool,
                     keys: SRTPSessionKeys) throws(SignallingError) -> MediaGrant {
        if ids[room]?[participant] != nil { leave(room: room, participant: participant) }
        if ids[room] == nil {
            do { _ = try relay.createRoomSync(room) } catch {
                if case .roomExists = error {} else { throw Self.map(error) }
            }
            ids[room] = [:]
        }
        // SSRCs below 2^31: tools that take the SSRC as a signed int (ffmpeg's -ssrc) can use them as is.
        var grant: ParticipantGrant?
        for _ in 0..<4 where grant == nil {
            let tracks: [ParleyRelay.TrackSpec] = publish
                ? [.opus(ssrc: UInt32.random(in: 1..<0x8000_0000)), .video(ssrc: UInt32.random(in: 1..<0x8000_0000))] : []
            do { grant = try relay.addParticipantSync(room: room, tracks: tracks) } catch {
                if case .ssrcInUse = error { continue }
                if ids[room]?.isEmpty == true { closeRoom(room) }
                throw Self.map(error)
            }
        }
        guard let grant else { throw SignallingError(.internalError, "could not grant unique SSRCs") }
        let crypto: ParticipantCrypto
        do { crypto = try .srtp(inbound: keys.send, outbound: keys.receive, metrics: metrics) } catch {
            try? relay.removeParticipantSync(room: room, grant.id)
            throw SignallingError(.internalError, "SRTP setup failed: \(error)")
        }
        do {
            try relay.setCryptoSync(room: room, participant: grant.id, crypto)
            try unsubscribeDefaults(room: room, grant: grant)
        } catch {
            try? relay.removeParticipantSync(room: room, grant.id)
            throw Self.map(error)
        }
        ids[room, default: [:]][participant] = grant.id
        names.withLock { $0[grant.id] = (room, participant) }
        var ssrcs: [MediaKind: UInt32] = [:]
        for t in grant.tracks { ssrcs[t.kind == .audio ? .audio : .video] = t.ssrc }
        let (host, port) = Self.split(grant.endpoint)
        return MediaGrant(host: advertisedHost ?? host, port: port, iceUfrag: grant.ufrag, icePassword: grant.password,
                          consentUfrag: grant.consentUfrag, consentPassword: grant.consentPassword, ssrcs: ssrcs,
                          timeoutSeconds: Int(relay.participantTimeout.components.seconds))
    }

    /// The relay subscribes every participant to every track; in Parley's
    /// protocol a client subscribes explicitly, so the defaults are undone.
    private func unsubscribeDefaults(room: String, grant: ParticipantGrant) throws(RelayError) {
        let stats = try relay.statsSync(room: room)
        for other in stats.participants where other.id != grant.id {
            for t in other.published { try relay.setSubscribedSync(room: room, subscriber: grant.id, ssrc: t.ssrc, false) }
            for t in grant.tracks { try relay.setSubscribedSync(room: room, subscriber: other.id, ssrc: t.ssrc, false) }
        }
    }

    public func leave(room: String, participant: String) {
        guard let id = ids[room]?.removeValue(forKey: participant) else { return }
        names.withLock { $0[id] = nil }
        try? relay.removeParticipantSync(room: room, id)
        if ids[room]?.isEmpty == true { closeRoom(room) }
    }

    /// The relay already removed this participant (timeout): drop the mapping only.
    func forget(room: String, participant: String) {
        guard let id = ids[room]?.removeValue(forKey: participant) else { return }
        names.withLock { $0[id] = nil }
        if ids[room]?.isEmpty == true { closeRoom(room) }
    }

    private func closeRoom(_ room: String) {
        ids[room] = nil
        try? relay.closeRoomSync(room)
    }

    public func keepAlive(room: String, participant: String) {
        guard let id = ids[room]?[participant] else { return }
        relay.keepAlive(room: room, id)
    }

    public func publish(room: String, participant: String, track: TrackDescription, ssrc: UInt32) throws(SignallingError) {
        // The relay granted (and created) the tracks at join; publishing declares what flows on them.
        guard ids[room]?[participant] != nil else { throw SignallingError(.notJoined, "not in the relay") }
    }

    public func unpublish(room: String, participant: String, ssrc: UInt32) {
        try? relay.setMutedSync(room: room, ssrc: ssrc, true)
    }

    public func subscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32) throws(SignallingError) -> UInt32 {
        guard let id = ids[room]?[subscriber] else { throw SignallingError(.notJoined, "not in the relay") }
        do { try relay.setSubscribedSync(room: room, subscriber: id, ssrc: ssrc, true) } catch { throw Self.map(error) }
        return ssrc
    }

    public func unsubscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32) {
        guard let id = ids[room]?[subscriber] else { return }
        try? relay.setSubscribedSync(room: room, subscriber: id, ssrc: ssrc, false)
    }

    public func setMuted(room: String, participant: String, ssrc: UInt32, muted: Bool) {
        try? relay.setMutedSync(room: room, ssrc: ssrc, muted)
    }

    static func map(_ e: RelayError) -> SignallingError {
        switch e {
        case .roomFull(let r, let l): return SignallingError(.roomFull, "room \(r) is full (\(l) participants)")
        case .tooManyRooms: return SignallingError(.roomFull, "the server carries its maximum number of rooms")
        case .noSuchTrack(let s): return SignallingError(.unknownTrack, "no track with SSRC \(s)")
        case .invalidRequest(let m): return SignallingError(.badRequest, m)
        default: return SignallingError(.internalError, e.description)
        }
    }

    static func split(_ endpoint: String) -> (String, Int) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
            return (endpoint, 0)
        }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}
