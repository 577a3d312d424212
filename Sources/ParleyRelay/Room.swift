import ParleyRTP
import ParleyCore
import ParleyIO

/// A room: its participants, the SSRCs granted to them, their published
/// tracks, and who receives what.
///
/// Nobody receives anything by default: a join grants (reserves) SSRCs,
/// `publish` makes a granted SSRC a `Track` (forwarded, with its
/// retransmission ring), and `setSubscribed` adds a receiver. The packet
/// path never walks participants: each `Track` keeps the array of
/// destination addresses, rebuilt here whenever a subscription or a latched
/// address changes. A Room lives on exactly one event loop (its
/// `RelayWorker`'s) and is touched only there.
final class Room {
    let name: String
    /// SSRC the relay uses as RTCP sender in this room (RR, PLI, FIR).
    let relaySSRC: UInt32
    let config: RelayConfig
    private(set) var participants: [Participant] = []
    private var byName: [String: Participant] = [:]
    /// Every SSRC granted in the room, published or not, and to whom.
    private var granted: [UInt32: Participant] = [:]
    /// The published tracks.
    private(set) var tracksBySSRC: [UInt32: Track] = [:]
    let participantsGauge: Gauge
    /// The recorder tap, if a recording is running.
    var tap: RTPTap?
    var nacksServed = 0
    var keyframeRequestsForwarded = 0
    var keyframeRequestsThrottled = 0
    var packetsIn = 0
    var packetsOut = 0

    init(name: String, config: RelayConfig, participantsGauge: Gauge) {
        self.name = name
        self.config = config
        self.participantsGauge = participantsGauge
        var ssrc: UInt32 = 0
        while ssrc == 0 { ssrc = UInt32.random(in: 1...UInt32.max) }
        relaySSRC = ssrc
    }

    func participant(named name: String) -> Participant? { byName[name] }

    /// Adds participant `name` (not in the room), granting it the SSRCs of
    /// `specs` (random unused ones where a spec names none). It publishes
    /// and receives nothing yet.
    func addParticipant(name: String, ufrag: String, password: String, consentUfrag: String, consentPassword: String,
                        tracks specs: [TrackDescription], nowMs: UInt64) throws(RelayError) -> Participant {
        precondition(byName[name] == nil, "the worker removes a participant it replaces first")
        guard participants.count < config.maxParticipantsPerRoom else {
            throw .roomFull(room: self.name, limit: config.maxParticipantsPerRoom)
        }
        // Validate every spec before changing anything.
        var grants: [TrackDescription] = []
        func taken(_ s: UInt32) -> Bool {
            s == 0 || s == relaySSRC || granted[s] != nil || grants.contains { $0.ssrc == s }
        }
        for spec in specs {
            try Self.validate(spec)
            var g = spec
            if let s = spec.ssrc {
                guard !taken(s) else { throw .ssrcInUse(s) }
            } else {
                var s: UInt32 = 0
                while taken(s) { s = UInt32.random(in: 1...UInt32.max) }
                g.ssrc = s
            }
            grants.append(g)
        }
        let p = Participant(name: name, room: self, ufrag: ufrag, password: password, consentUfrag: consentUfrag,
                            consentPassword: consentPassword, nowMs: nowMs)
        p.granted = grants
        for g in grants { granted[g.ssrc!] = p }
        participants.append(p)
        byName[name] = p
        participantsGauge.set(participants.count)
        tap?.event?(.joined(participant: name))
        return p
    }

    /// Removes a participant, its grants, its tracks and its subscriptions.
    func removeParticipant(_ p: Participant) {
        guard let i = participants.firstIndex(where: { $0 === p }) else { return }
        participants.remove(at: i)
        byName[p.name] = nil
        for t in p.receiving { t.removeSubscriber(p) }
        for t in p.published { unpublish(t) }
        for g in p.granted { granted[g.ssrc!] = nil }
        p.removed = true
        participantsGauge.set(participants.count)
        tap?.event?(.left(participant: p.name))
    }

    /// Makes `spec` (its SSRC one granted to `p`) a published track: from
    /// now on its RTP is forwarded to subscribers and kept for
    /// retransmission. The spec's kind, payload type and clock rate are the
    /// track's (the grant's are only what was asked for at join).
    func publish(_ p: Participant, _ spec: TrackDescription) throws(RelayError) -> Track {
        guard let ssrc = spec.ssrc, p.isGranted(ssrc) else { throw .ssrcNotGranted(spec.ssrc ?? 0) }
        guard tracksBySSRC[ssrc] == nil else { throw .invalidRequest("SSRC \(ssrc) is already published") }
        try Self.validate(spec)
        // A simulcast track keeps a ring of this size per layer.
        let slots = spec.kind == .video ? config.videoRetransmissionSlots : config.audioRetransmissionSlots
        let t = Track(spec: spec, ssrc: ssrc, publisher: p, retransmissionSlots: slots)
        p.published.append(t)
        tracksBySSRC[ssrc] = t
        tap?.event?(.published(t.info))
        return t
    }

    /// Ends track `t`: its subscriptions and its retransmission ring go with
    /// it. The SSRC stays granted (RTP on it is dropped as `unpublished`).
    func unpublish(_ t: Track) {
        for s in t.subscribers { t.removeSubscriber(s) }
        t.publisher.published.removeAll { $0 === t }
        tracksBySSRC[t.ssrc] = nil
        tap?.event?(.unpublished(t.info))
    }

    private static func validate(_ spec: TrackDescription) throws(RelayError) {
        guard spec.payloadType <= 127, !(72...79).contains(spec.payloadType) else {
            throw .invalidRequest("payload type \(spec.payloadType) is not usable on an RTP/RTCP-muxed port")
        }
        guard spec.clockRate > 0, spec.clockRate <= Int(UInt32.max) else { throw .invalidRequest("clock rate must be positive") }
    }

    /// Starts or stops delivery of track `ssrc` to `subscriber`.
    func setSubscribed(_ subscriber: Participant, ssrc: UInt32, _ subscribed: Bool) throws(RelayError) {
        guard let t = tracksBySSRC[ssrc] else { throw .noSuchTrack(ssrc) }
        guard t.publisher !== subscriber else { throw .invalidRequest("a participant cannot subscribe to its own track") }
        if subscribed { t.addSubscriber(subscriber) } else { t.removeSubscriber(subscriber) }
    }

    /// Publisher-side mute of track `ssrc`: nothing is forwarded while muted.
    func setMuted(ssrc: UInt32, _ muted: Bool) throws(RelayError) {
        guard let t = tracksBySSRC[ssrc] else { throw .noSuchTrack(ssrc) }
        guard t.muted != muted else { return }
        t.muted = muted
        tap?.event?(.muteChanged(t.info))
    }

    /// Sets (or with nil removes) the recorder tap and replays the room's
    /// participants and tracks to the new one.
    func setTap(_ new: RTPTap?) {
        tap = new
        guard let event = new?.event else { return }
        for p in participants {
            event(.joined(participant: p.name))
            for t in p.published {
                event(.published(t.info))
                if t.muted { event(.muteChanged(t.info)) }
            }
        }
    }

    /// The participant's latched address changed: rebuild the destinations
    /// of every track it receives.
    func addressChanged(_ p: Participant) {
        for t in p.receiving { t.recomputeDestinations() }
    }

    func stats(loopIndex: Int) -> RoomStats {
        RoomStats(name: name, loopIndex: loopIndex, participants: participants.map { p in
            ParticipantStats(name: p.name, address: p.address?.description, published: p.published.map(\.info),
                             subscribedSSRCs: p.receiving.map(\.ssrc), packetsIn: p.packetsIn, bytesIn: p.bytesIn,
                             packetsForwarded: p.published.reduce(0) { $0 + $1.packetsForwarded })
        }, packetsIn: packetsIn, packetsOut: packetsOut, nacksServed: nacksServed,
           keyframeRequestsForwarded: keyframeRequestsForwarded, keyframeRequestsThrottled: keyframeRequestsThrottled)
    }
}

/// ICE-style credential strings (RFC 8839 ice-char: ALPHA / DIGIT / "+" / "/").
enum Credentials {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    static func random(_ count: Int) -> String {
        var g = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: count)
        for i in 0..<count { bytes[i] = alphabet[Int(g.next(upperBound: UInt32(alphabet.count)))] }
        return String(decoding: bytes, as: UTF8.self)
    }
}
