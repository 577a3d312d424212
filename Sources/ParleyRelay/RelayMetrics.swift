import ParleyCore

/// Why the relay dropped a datagram (the `reason` label of
/// `parley_relay_dropped_total`).
enum DropReason: Int, CaseIterable {
    /// Source address is not a latched participant.
    case unknownSource
    /// First byte is none of STUN / RTP / RTCP (RFC 7983).
    case unknownProtocol
    /// RTP/RTCP/STUN that does not parse.
    case malformed
    /// RTP with an SSRC the sender was not granted.
    case unknownSSRC
    /// RTP on an SSRC granted to the sender but not published (or unpublished).
    case unpublished
    /// The track is muted by its publisher.
    case muted
    /// SRTP/SRTCP authentication failed (crypto hook).
    case authFailed
    /// STUN that is not a Binding request, or fails its credentials.
    case stunRejected
    /// STUN from an unknown source over its `STUNRateLimit` (not answered).
    case stunRateLimited

    var label: String {
        switch self {
        case .unknownSource: return "unknown_source"
        case .unknownProtocol: return "unknown_protocol"
        case .malformed: return "malformed"
        case .unknownSSRC: return "unknown_ssrc"
        case .unpublished: return "unpublished"
        case .muted: return "muted"
        case .authFailed: return "auth_failed"
        case .stunRejected: return "stun_rejected"
        case .stunRateLimited: return "stun_rate_limited"
        }
    }
}

/// The relay's counters in the process registry. Shared by every loop
/// (atomic adds); the packet path accumulates per `recvmmsg` batch in a
/// `BatchCounters` and adds once per batch.
final class RelayMetrics: Sendable {
    let packetsIn, bytesIn, packetsOut, bytesOut: Counter
    let dropped: [Counter]
    let nacksServed, nacksMissed, nacksDuplicate, nacksOverBudget: Counter
    let keyframeForwarded, keyframeThrottled: Counter
    let stunBindings: Counter
    let rtcpIn: Counter
    let receiverReports: Counter
    let rooms: Gauge
    let participants: Gauge
    let timeouts: Counter
    let consentRequests, consentSucceeded, consentFailed: Counter
    let consentExpired: Counter
    let stunReplays: Counter
    let rtcpLatches: Counter
    let dtlsConnected, dtlsFailed, dtlsTimedOut: Counter
    let dtlsMalformed, dtlsUnknownSource, dtlsApplicationData: Counter
    let payloadTypeRewrites: Counter
    let rembSent: Counter
    let transportFeedbackSent: Counter
    let simulcastSwitches: Counter
    let simulcastLayersLearned: Counter
    let headerExtensionRewrites: Counter
    let registry: MetricsRegistry

    init(_ r: MetricsRegistry) {
        registry = r
        packetsIn = r.counter("parley_relay_packets_in_total", help: "RTP/RTCP/STUN datagrams received on media ports.")
        bytesIn = r.counter("parley_relay_bytes_in_total", help: "Bytes received on media ports.")
        packetsOut = r.counter("parley_relay_packets_out_total", help: "Datagrams sent from media ports (forwarded, retransmitted, generated).")
        bytesOut = r.counter("parley_relay_bytes_out_total", help: "Bytes sent from media ports.")
        let help = "Datagrams the relay dropped, by reason."
        dropped = DropReason.allCases.map { r.counter("parley_relay_dropped_total", help: help, labels: [("reason", $0.label)]) }
        let nackHelp = "Packets requested by NACK, by result."
        nacksServed = r.counter("parley_relay_nack_packets_total", help: nackHelp, labels: [("result", "served")])
        nacksMissed = r.counter("parley_relay_nack_packets_total", help: nackHelp, labels: [("result", "missed")])
        nacksDuplicate = r.counter("parley_relay_nack_packets_total", help: nackHelp, labels: [("result", "duplicate")])
        nacksOverBudget = r.counter("parley_relay_nack_packets_total", help: nackHelp, labels: [("result", "over_budget")])
        keyframeForwarded = r.counter("parley_relay_keyframe_requests_total", help: "PLI/FIR from subscribers, by result.", labels: [("result", "forwarded")])
        keyframeThrottled = r.counter("parley_relay_keyframe_requests_total", help: "PLI/FIR from subscribers, by result.", labels: [("result", "throttled")])
        stunBindings = r.counter("parley_relay_stun_bindings_total", help: "STUN Binding requests answered with success on media ports.")
        rtcpIn = r.counter("parley_relay_rtcp_packets_in_total", help: "RTCP compound packets received from participants.")
        receiverReports = r.counter("parley_relay_receiver_reports_total", help: "RTCP RR packets the relay sent to publishers.")
        rooms = r.gauge("parley_relay_rooms", help: "Rooms open.")
        participants = r.gauge("parley_relay_participants", help: "Participants in all rooms.")
        timeouts = r.counter("parley_relay_participant_timeouts_total", help: "Participants removed for sending nothing.")
        r.declare(Self.roomParticipants, .gauge, help: Self.roomParticipantsHelp)
        consentRequests = r.counter("parley_relay_consent_requests_total",
                                    help: "Binding requests the relay sent to check consent at a new address (retransmissions included).")
        let consentHelp = "Consent checks (media moves to a new address only after one succeeds), by result."
        consentSucceeded = r.counter("parley_relay_consent_checks_total", help: consentHelp, labels: [("result", "succeeded")])
        consentFailed = r.counter("parley_relay_consent_checks_total", help: consentHelp, labels: [("result", "failed")])
        consentExpired = r.counter("parley_relay_consent_expired_total",
                                   help: "WebRTC participants removed because their own consent checks stopped (RFC 7675)")
        stunReplays = r.counter("parley_relay_stun_replays_total",
                                help: "Authenticated Binding requests with a transaction ID already seen (answered; they move nothing).")
        rtcpLatches = r.counter("parley_relay_rtcp_latches_total",
                                help: "RTCP addresses latched by an authenticated SRTCP packet (from a media port + 1, or for a published sender SSRC).")
        let hsHelp = "DTLS-SRTP handshakes of WebRTC participants, by result."
        dtlsConnected = r.counter("parley_relay_dtls_handshakes_total", help: hsHelp, labels: [("result", "connected")])
        dtlsFailed = r.counter("parley_relay_dtls_handshakes_total", help: hsHelp, labels: [("result", "failed")])
        dtlsTimedOut = r.counter("parley_relay_dtls_handshakes_total", help: hsHelp, labels: [("result", "timeout")])
        let dropHelp = "DTLS datagrams the relay dropped, by reason."
        dtlsMalformed = r.counter("parley_relay_dtls_dropped_total", help: dropHelp, labels: [("reason", "malformed")])
        dtlsUnknownSource = r.counter("parley_relay_dtls_dropped_total", help: dropHelp, labels: [("reason", "unknown_source")])
        dtlsApplicationData = r.counter("parley_relay_dtls_dropped_total", help: dropHelp, labels: [("reason", "application_data")])
        rembSent = r.counter("parley_relay_remb_sent_total", help: "REMB packets the relay sent to WebRTC publishers (with their receiver reports).")
        transportFeedbackSent = r.counter("parley_relay_transport_feedback_sent_total",
                                          help: "Transport-wide congestion control feedback packets (RTPFB 15) the relay sent to WebRTC publishers.")
        simulcastSwitches = r.counter("parley_relay_simulcast_switches_total",
                                      help: "Times a subscriber of a simulcast track, or the room's recorder, started or changed layers (at a keyframe).")
        simulcastLayersLearned = r.counter("parley_relay_simulcast_layers_total",
                                           help: "Simulcast layer SSRCs the relay learned from the rid header extension.")
        headerExtensionRewrites = r.counter("parley_relay_header_extension_rewrites_total",
                                            help: "Forwarded RTP packets whose header extensions were renumbered to the subscriber's ids.")
        payloadTypeRewrites = r.counter("parley_relay_payload_type_rewrites_total",
                                        help: "RTP packets forwarded with the payload type the subscriber negotiated instead of the publisher's.")
    }

    static let roomParticipants = "parley_relay_room_participants"
    static let roomParticipantsHelp = "Participants per room."

    /// `parley_relay_room_participants{room=…}`.
    func roomGauge(_ room: String) -> Gauge {
        registry.gauge(Self.roomParticipants, help: Self.roomParticipantsHelp, labels: [("room", room)])
    }

    func counter(_ r: DropReason) -> Counter { dropped[r.rawValue] }
}

/// Per-batch tallies, flushed to `RelayMetrics` once per `recvmmsg` batch.
struct BatchCounters {
    var packetsIn = 0, bytesIn = 0, packetsOut = 0, bytesOut = 0, payloadTypeRewrites = 0, headerExtensionRewrites = 0
    var drops = (0, 0, 0, 0, 0, 0, 0, 0, 0)

    @inline(__always) mutating func drop(_ r: DropReason) {
        switch r {
        case .unknownSource: drops.0 += 1
        case .unknownProtocol: drops.1 += 1
        case .malformed: drops.2 += 1
        case .unknownSSRC: drops.3 += 1
        case .muted: drops.4 += 1
        case .authFailed: drops.5 += 1
        case .stunRejected: drops.6 += 1
        case .stunRateLimited: drops.7 += 1
        case .unpublished: drops.8 += 1
        }
    }

    func flush(to m: RelayMetrics) {
        if packetsIn > 0 { m.packetsIn.inc(packetsIn); m.bytesIn.inc(bytesIn) }
        if packetsOut > 0 { m.packetsOut.inc(packetsOut); m.bytesOut.inc(bytesOut) }
        if payloadTypeRewrites > 0 { m.payloadTypeRewrites.inc(payloadTypeRewrites) }
        if headerExtensionRewrites > 0 { m.headerExtensionRewrites.inc(headerExtensionRewrites) }
        if drops.0 > 0 { m.counter(.unknownSource).inc(drops.0) }
        if drops.1 > 0 { m.counter(.unknownProtocol).inc(drops.1) }
        if drops.2 > 0 { m.counter(.malformed).inc(drops.2) }
        if drops.3 > 0 { m.counter(.unknownSSRC).inc(drops.3) }
        if drops.4 > 0 { m.counter(.muted).inc(drops.4) }
        if drops.5 > 0 { m.counter(.authFailed).inc(drops.5) }
        if drops.6 > 0 { m.counter(.stunRejected).inc(drops.6) }
        if drops.7 > 0 { m.counter(.stunRateLimited).inc(drops.7) }
        if drops.8 > 0 { m.counter(.unpublished).inc(drops.8) }
    }
}
