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

    init(spec: TrackDescription, ssrc: UInt32, publisher: Participant, retransmissionSlots: Int) {
        self.ssrc = ssrc
        var s = spec
        s.ssrc = ssrc
        self.spec = s
        kind = spec.kind
        codecName = spec.codec.lowercased()
        codecKey = spec.codecKey
        self.publisher = publisher
        retransmission = retransmissionSlots > 0 ? RetransmissionBuffer(slots: retransmissionSlots) : nil
        statistics = RTPReceiveStatistics(clockRate: UInt32(spec.clockRate), probation: 0)
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
        p.receiving.removeAll { $0 === self }
        recomputeDestinations()
        return true
    }

    /// Rebuilds `destinations` from the subscribers' latched addresses.
    func recomputeDestinations() {
        destinations.removeAll(keepingCapacity: true)
        destinationParticipants.removeAll(keepingCapacity: true)
        destinationPayloadTypes.removeAll(keepingCapacity: true)
        needsPerDestinationCopy = false
        for s in subscribers {
            guard let a = s.address else { continue }
            destinations.append(a)
            destinationParticipants.append(s)
            destinationPayloadTypes.append(s.rewrittenPayloadType(self))
            // A TCP media connection gets its own framed copy (RelayWorker+TCP).
            if s.crypto != nil || a.isRelayTCP { needsPerDestinationCopy = true }
        }
    }
}
