import ParleyCore
import ParleyIO

/// A room: its participants, their tracks, and who receives what.
///
/// Every participant receives every other participant's tracks by default;
/// per-track unsubscribe/subscribe and publisher-side mute change that. The
/// packet path never walks participants: each `Track` keeps the array of
/// destination addresses, rebuilt here whenever a subscription or a latched
/// address changes. A Router lives on exactly one event loop (its
/// `RelayWorker`'s) and is touched only there.
final class Router {
    let name: String
    /// SSRC the relay uses as RTCP sender in this room (RR, PLI, FIR).
    let relaySSRC: UInt32
    let config: RelayConfig
    private(set) var participants: [Participant] = []
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

    func participant(_ id: ParticipantID) -> Participant? { participants.first { $0.id == id } }

    /// Adds a participant publishing `specs`, subscribed to everyone else's
    /// tracks, and subscribes everyone else to its tracks.
    func addParticipant(id: ParticipantID, ufrag: String, password: String, consentUfrag: String, consentPassword: String,
                        tracks specs: [TrackSpec], nowMs: UInt64) throws(RelayError) -> Participant {
        guard participants.count < config.maxParticipantsPerRoom else {
            throw .roomFull(room: name, limit: config.maxParticipantsPerRoom)
        }
        // Validate every spec before changing anything.
        var granted: [UInt32] = []
        for spec in specs {
            guard spec.payloadType <= 127, !(72...79).contains(spec.payloadType) else {
                throw .invalidRequest("payload type \(spec.payloadType) is not usable on an RTP/RTCP-muxed port")
            }
            guard spec.clockRate > 0 else { throw .invalidRequest("clock rate must be positive") }
            if let s = spec.ssrc {
                guard s != 0, tracksBySSRC[s] == nil, !granted.contains(s) else { throw .ssrcInUse(s) }
                granted.append(s)
            } else {
                var s: UInt32 = 0
                while s == 0 || s == relaySSRC || tracksBySSRC[s] != nil || granted.contains(s) {
                    s = UInt32.random(in: 1...UInt32.max)
                }
                granted.append(s)
            }
        }
        let p = Participant(id: id, router: self, ufrag: ufrag, password: password, consentUfrag: consentUfrag,
                            consentPassword: consentPassword, nowMs: nowMs)
        for (spec, ssrc) in zip(specs, granted) {
            let slots = spec.kind == .video ? config.videoRetransmissionSlots : config.audioRetransmissionSlots
            let t = Track(spec: spec, ssrc: ssrc, publisher: p, retransmissionSlots: slots)
            p.published.append(t)
            tracksBySSRC[ssrc] = t
        }
        for other in participants {
            for t in other.published { t.addSubscriber(p) }
            for t in p.published { t.addSubscriber(other) }
        }
        participants.append(p)
        participantsGauge.set(participants.count)
        return p
    }

    /// Removes a participant, its tracks and its subscriptions.
    func removeParticipant(_ p: Participant) {
        guard let i = participants.firstIndex(where: { $0 === p }) else { return }
        participants.remove(at: i)
        for t in p.receiving { t.removeSubscriber(p) }
        for t in p.published {
            for s in t.subscribers { t.removeSubscriber(s) }
            tracksBySSRC[t.ssrc] = nil
        }
        p.published.removeAll()
        p.removed = true
        participantsGauge.set(participants.count)
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
        t.muted = muted
    }

    /// The participant's latched address changed: rebuild the destinations
    /// of every track it receives.
    func addressChanged(_ p: Participant) {
        for t in p.receiving { t.recomputeDestinations() }
    }

    func stats(loopIndex: Int) -> RoomStats {
        RoomStats(name: name, loopIndex: loopIndex, participants: participants.map { p in
            ParticipantStats(id: p.id, address: p.address?.description, published: p.published.map(\.info),
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
