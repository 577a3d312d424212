import ParleyCore
import ParleyIO
import ParleyRTP

/// A publisher's media stream (one SSRC) and who receives it: mediasoup's
/// Producer and its Consumers in one object. Loop only.
final class Track {
    let ssrc: UInt32
    /// What the publisher declared (its `ssrc` is `ssrc`).
    let spec: TrackDescription
    let kind: MediaKind
    /// `spec.codec` in lower case (payload type rewriting compares codecs).
    let codecName: String
    /// `spec.codecKey`: what a subscriber's codec must match for its payload type to be used.
    let codecKey: String
    unowned let publisher: Participant
    /// Publisher-side mute: nothing is forwarded while set.
    var muted = false
    /// Participants subscribed to this track, latched or not.
    private(set) var subscribers: [Participant] = []
    /// Parallel to `subscribers`: what each may still be resent on NACK.
    private var retransmissionBudgets: [RetransmissionBudget] = []
    /// What the packet path walks: the latched addresses of `subscribers`,
    /// recomputed on every (un)subscribe or latch, never per packet.
    private(set) var destinations: [SocketAddress] = []
    /// Parallel to `destinations` (for per-subscriber SRTP protect).
    private(set) var destinationParticipants: [Participant] = []
    /// Parallel to `destinations`: the payload type to rewrite to for each (0xFF: as published).
    private(set) var destinationPayloadTypes: [UInt8] = []
    /// True when some destination has an outbound crypto hook (the packet
    /// must then be copied per subscriber instead of sent by reference).
    private(set) var needsPerDestinationCopy = false
    /// The last packets for NACK answers; nil when disabled for this kind.
    let retransmission: RetransmissionBuffer?
    /// RFC 3550 receive statistics, for our RR to the publisher.
    var statistics: RTPReceiveStatistics
    /// Monotonic ms of the last keyframe request sent to the publisher; nil before the first.
    var lastKeyframeRequestMs: UInt64?
    /// FIR command sequence number (RFC 5104 §4.3.1.1), incremented per FIR we send.
    var firSequence: UInt8 = 0
    var packetsIn = 0
    var bytesIn = 0
    var packetsForwarded = 0
    /// A simulcast track's layers (nil: one stream).
    let simulcast: SimulcastLayers?
    /// Parallel to `subscribers` (simulcast only): which layer each receives and how it is renumbered.
    private var layerChoices: [LayerChoice] = []
    /// Parallel to `destinations` (simulcast only).
    private(set) var destinationLayers: [LayerChoice] = []

    init(spec: TrackDescription, ssrc: UInt32, publisher: Participant, retransmissionSlots: Int) {
        self.ssrc = ssrc
        var s = spec
        s.ssrc = ssrc
        self.spec = s
        kind = spec.kind
        codecName = spec.codec.lowercased()
        codecKey = spec.codecKey
        self.publisher = publisher
        // A simulcast track keeps a ring per layer instead (each layer numbers its own packets).
        retransmission = retransmissionSlots > 0 && spec.rids.isEmpty ? RetransmissionBuffer(slots: retransmissionSlots) : nil
        statistics = RTPReceiveStatistics(clockRate: UInt32(spec.clockRate), probation: 0)
        simulcast = spec.rids.isEmpty ? nil
            : SimulcastLayers(rids: spec.rids, clockRate: spec.clockRate, retransmissionSlots: retransmissionSlots)
    }

    /// What subscriber `p` receives of a simulcast track.
    func layerChoice(for p: Participant) -> LayerChoice? {
        guard simulcast != nil, let i = subscribers.firstIndex(where: { $0 === p }) else { return nil }
        return layerChoices[i]
    }

    var info: RoomTrack {
        RoomTrack(participant: publisher.name, spec: spec, ssrc: ssrc, muted: muted)
    }

    func isSubscribed(_ p: Participant) -> Bool { subscribers.contains { $0 === p } }

    /// Subscriber `p`'s retransmission budget; nil if `p` does not receive
    /// this track or the track keeps no packets to resend.
    func retransmissionBudget(for p: Participant) -> RetransmissionBudget? {
        guard retransmission != nil, let i = subscribers.firstIndex(where: { $0 === p }) else { return nil }
        return retransmissionBudgets[i]
    }

    /// Adds `p` as a subscriber; false if it already was one.
    @discardableResult
    func addSubscriber(_ p: Participant) -> Bool {
        guard p !== publisher, !isSubscribed(p) else { return false }
        subscribers.append(p)
        retransmissionBudgets.append(RetransmissionBudget(ring: retransmission))
        if let sc = simulcast { layerChoices.append(LayerChoice(target: sc.rids.count - 1, rings: sc.retransmission)) }
        p.receiving.append(self)
        recomputeDestinations()
        return true
    }

    /// Removes `p` as a subscriber; false if it was not one.
    @discardableResult
    func removeSubscriber(_ p: Participant) -> Bool {
        guard let i = subscribers.firstIndex(where: { $0 === p }) else { return false }
        subscribers.remove(at: i)
        retransmissionBudgets.remove(at: i)
        if simulcast != nil { layerChoices.remove(at: i) }
        p.receiving.removeAll { $0 === self }
        recomputeDestinations()
        return true
    }

    /// Rebuilds `destinations` from the subscribers' latched addresses.
    func recomputeDestinations() {
        destinations.removeAll(keepingCapacity: true)
        destinationParticipants.removeAll(keepingCapacity: true)
        destinationPayloadTypes.removeAll(keepingCapacity: true)
        destinationLayers.removeAll(keepingCapacity: true)
        needsPerDestinationCopy = simulcast != nil // each copy renumbered
        for (i, s) in subscribers.enumerated() {
            guard let a = s.address else { continue }
            if simulcast != nil { destinationLayers.append(layerChoices[i]) }
            destinations.append(a)
            destinationParticipants.append(s)
            destinationPayloadTypes.append(s.rewrittenPayloadType(self))
            // A TCP media connection gets its own framed copy (RelayWorker+TCP).
            if s.crypto != nil || a.isRelayTCP { needsPerDestinationCopy = true }
        }
    }
}

/// A simulcast track's layers, lowest first: their SSRCs (learned from the
/// rid header extension of the first packet of each), receive statistics
/// and keyframe request throttles. Loop only.
final class SimulcastLayers {
    let rids: [String]
    var ssrcs: [UInt32?]
    var statistics: [RTPReceiveStatistics]
    var packetsIn: [Int]
    var lastKeyframeRequestMs: [UInt64?]
    /// Monotonic ms of each layer's last packet (0: none yet).
    var lastPacketMs: [UInt64]
    /// Per layer, its last packets for NACK answers (empty: none kept).
    let retransmission: [RetransmissionBuffer]
    /// What the room's recorder gets of the track (the highest layer sent),
    /// renumbered as for a subscriber; nil until the first packet with a tap.
    var recording: LayerChoice?
    /// A layer is active while its packets keep coming (a browser stops the
    /// upper ones when its bandwidth estimate is too low for them).
    static let activeMs: UInt64 = 1000

    init(rids: [String], clockRate: Int, retransmissionSlots: Int = 0) {
        retransmission = retransmissionSlots > 0 ? rids.map { _ in RetransmissionBuffer(slots: retransmissionSlots) } : []
        self.rids = rids
        ssrcs = Array(repeating: nil, count: rids.count)
        statistics = Array(repeating: RTPReceiveStatistics(clockRate: UInt32(clockRate), probation: 0), count: rids.count)
        packetsIn = Array(repeating: 0, count: rids.count)
        lastKeyframeRequestMs = Array(repeating: nil, count: rids.count)
        lastPacketMs = Array(repeating: 0, count: rids.count)
    }

    /// The layer a subscriber that asked for `target` gets: it, or the highest active one below it.
    func effective(target: Int, nowMs: UInt64) -> Int {
        var l = target
        while l > 0, lastPacketMs[l] == 0 || nowMs &- lastPacketMs[l] > Self.activeMs { l -= 1 }
        return l
    }

    /// The layer whose rid is `bytes` (the rid extension's value).
    func layer(rid bytes: UnsafeRawBufferPointer) -> Int? {
        for (i, r) in rids.enumerated() where r.utf8.count == bytes.count && r.utf8.elementsEqual(bytes) { return i }
        return nil
    }

    func layer(ssrc: UInt32) -> Int? { ssrcs.firstIndex { $0 == ssrc } }
}

/// Which layer of a simulcast track one subscriber receives (`current`, nil
/// until a keyframe starts it), the one it asked for (`target`, switched to
/// at that layer's next keyframe), and the offsets that make what it
/// receives one stream: the track's SSRC, sequence numbers and timestamps
/// that continue across switches. Loop only.
final class LayerChoice {
    var target: Int
    var current: Int?
    var sequenceOffset: UInt16 = 0
    var timestampOffset: UInt32 = 0
    var lastSequence: UInt16 = 0
    var lastTimestamp: UInt32 = 0
    var lastForwardMs: UInt64 = 0
    var started = false
    var switches = 0
    /// The first outgoing sequence number of the current layer's stretch.
    var currentStart: UInt16 = 0
    /// The stretch before the last switch: its layer, first outgoing sequence
    /// number and offsets (a NACK of it is mapped back through them).
    var previous: (layer: Int, start: UInt16, sequenceOffset: UInt16, timestampOffset: UInt32)?
    /// Per layer: what it may still be resent of that layer on NACK.
    let budgets: [RetransmissionBudget]

    init(target: Int, rings: [RetransmissionBuffer] = []) {
        self.target = target
        budgets = rings.map { RetransmissionBudget(ring: $0) }
    }

    /// Where outgoing sequence number `s` came from, if it was sent in the
    /// current stretch or the one before: the layer, that layer's own
    /// sequence number, and the timestamp offset it was sent with.
    func source(of s: UInt16) -> (layer: Int, sequence: UInt16, timestampOffset: UInt32)? {
        guard started, let c = current else { return nil }
        if Int16(bitPattern: s &- currentStart) >= 0, Int16(bitPattern: lastSequence &- s) >= 0 {
            return (c, s &- sequenceOffset, timestampOffset)
        }
        if let p = previous, Int16(bitPattern: s &- p.start) >= 0, Int16(bitPattern: currentStart &- 1 &- s) >= 0 {
            return (p.layer, s &- p.sequenceOffset, p.timestampOffset)
        }
        return nil
    }

    /// Starts forwarding `layer` at a keyframe with sequence number `seq` and
    /// timestamp `ts`: the next outgoing sequence number follows the last one
    /// sent, and the timestamp advances by the time since (at `clockRate`).
    func switchTo(_ layer: Int, seq: UInt16, ts: UInt32, nowMs: UInt64, clockRate: Int) {
        if started, let c = current {
            previous = (c, currentStart, sequenceOffset, timestampOffset)
            sequenceOffset = lastSequence &+ 1 &- seq
            let elapsed = UInt32(truncatingIfNeeded: max(1, (nowMs &- lastForwardMs) * UInt64(clockRate) / 1000))
            timestampOffset = lastTimestamp &+ elapsed &- ts
        } else {
            sequenceOffset = 0
            timestampOffset = 0
        }
        current = layer
        currentStart = seq &+ sequenceOffset
        switches += 1
    }

    /// The outgoing sequence number and timestamp of a packet of the current layer; remembers the newest.
    func rewrite(seq: UInt16, ts: UInt32, nowMs: UInt64) -> (UInt16, UInt32) {
        let s = seq &+ sequenceOffset, t = ts &+ timestampOffset
        if !started || Int16(bitPattern: s &- lastSequence) > 0 {
            lastSequence = s
            lastTimestamp = t
            lastForwardMs = nowMs
            started = true
        }
        return (s, t)
    }
}

/// The SSRC, sequence number and timestamp a subscriber's copy is sent with (simulcast).
struct Renumbering {
    var ssrc: UInt32
    var sequence: UInt16
    var timestamp: UInt32
}
