import ParleyCore
import ParleyRTP

/// What a successful join returns: where to send media and how to authenticate.
public struct ParticipantGrant: Sendable, Equatable {
    /// The participant's name in the room (the signalling's name for it).
    public var name: String
    public var room: String
    /// Index of the event loop the room lives on.
    public var loopIndex: Int
    /// host:port of the room's loop media socket (the advertised address).
    public var endpoint: SocketAddressText
    /// host:port of the room's loop TCP media listener (RFC 4571), when TCP media is on.
    public var tcpEndpoint: SocketAddressText? = nil
    /// ICE-style short-term credentials: the client sends STUN Binding
    /// requests with USERNAME `ufrag` (or `ufrag:anything`) and
    /// MESSAGE-INTEGRITY keyed with `password`; a valid one latches its address.
    public var ufrag: String
    public var password: String
    /// The reverse direction: before media goes to a new address the relay
    /// sends its own Binding request there (a consent check, RFC 7675) with
    /// USERNAME `consentUfrag:ufrag` and MESSAGE-INTEGRITY keyed with
    /// `consentPassword`; the client answers with a success response
    /// carrying MESSAGE-INTEGRITY keyed with `consentPassword`.
    public var consentUfrag: String
    public var consentPassword: String
    /// The tracks it may publish, with the SSRCs granted (reserved; nothing
    /// flows on them until `Relay.publish`).
    public var tracks: [RoomTrack]
}

/// A `host:port` string (what the signalling layer hands to clients).
public typealias SocketAddressText = String

/// A snapshot of one participant.
public struct ParticipantStats: Sendable, Equatable {
    public var name: String
    /// The latched media address, if any (`"1.2.3.4:5000"`).
    public var address: String?
    public var published: [RoomTrack]
    /// SSRCs of the tracks this participant currently receives.
    public var subscribedSSRCs: [UInt32]
    /// Packets and bytes received from this participant.
    public var packetsIn: Int
    public var bytesIn: Int
    /// Copies of this participant's packets sent to subscribers.
    public var packetsForwarded: Int
}

/// A snapshot of one room.
public struct RoomStats: Sendable, Equatable {
    public var name: String
    /// Index of the event loop the room lives on.
    public var loopIndex: Int
    public var participants: [ParticipantStats]
    public var packetsIn: Int
    public var packetsOut: Int
    public var nacksServed: Int
    public var keyframeRequestsForwarded: Int
    public var keyframeRequestsThrottled: Int
}

/// Things the relay decides on its own that the signalling layer wants to know.
public enum RelayEvent: Sendable, Equatable {
    /// A participant sent nothing for the timeout and was removed.
    case participantTimedOut(room: String, name: String)
    /// A participant's media address was latched (or moved) by an authenticated packet.
    case participantLatched(room: String, name: String, address: String)
    /// A WebRTC participant's DTLS handshake failed or timed out: its transport was closed and it left the room.
    case transportFailed(room: String, name: String, reason: String)
}

/// Relay tuning and limits. Defaults are the production ones.
public struct RelayConfig: Sendable {
    /// Rooms one event loop may carry; more → `RelayError.tooManyRooms`.
    public var maxRoomsPerLoop = 1000
    /// Participants per room; more → `RelayError.roomFull`.
    public var maxParticipantsPerRoom = 100
    /// A participant that sends nothing (media, RTCP or STUN) for this long is removed. Zero disables.
    public var participantTimeout: Duration = .seconds(30)
    /// How often timeouts are checked and receiver reports sent to publishers.
    public var housekeepingInterval: Duration = .seconds(1)
    /// Minimum interval between keyframe requests (PLI/FIR) forwarded to one track's publisher.
    public var keyframeRequestInterval: Duration = .seconds(1)
    /// Retransmission buffer slots per video track (a power of two; ~1 s at 2.5 Mbit/s of 1200-byte packets fits in 512).
    public var videoRetransmissionSlots = 512
    /// Retransmission buffer slots per audio track (0: audio NACKs are not answered).
    public var audioRetransmissionSlots = 64
    /// Packets older than this are not retransmitted.
    public var retransmissionMaxAge: Duration = .seconds(1)
    /// A packet is resent to one subscriber at most once per this interval
    /// (about a round trip; at least once per NACK even when zero).
    public var retransmissionResendInterval: Duration = .milliseconds(100)
    /// Bytes resent to a subscriber on NACK, at most this percentage of the
    /// bytes of the track forwarded to it (0 answers no NACK).
    public var retransmissionBudgetPercent = 100
    /// Answers to STUN requests that do not authenticate, from addresses
    /// nobody latched, per source IP; nil: no limit.
    public var stunRateLimit: STUNRateLimit? = STUNRateLimit()
    /// Interval between retransmissions of a consent check (the relay's
    /// Binding request to a participant's new address).
    public var consentRetransmitInterval: Duration = .milliseconds(500)
    /// Requests sent for one consent check before it fails (media stays
    /// where it was).
    public var consentMaxAttempts = 7
    /// The bitrate (bits/s) the relay announces in REMB to WebRTC publishers
    /// that negotiated goog-remb, beside its receiver reports: a cap for the
    /// sender's bandwidth estimate, not a measurement. 0: no REMB.
    public var rembBitrate: UInt64 = 2_000_000
    /// How often the relay sends transport-wide congestion control feedback
    /// to each WebRTC publisher that negotiated transport-cc (what arrived
    /// since the last one, at most `maxTransportFeedbackPackets` packets of
    /// at most 1,200 bytes each time). Zero: none (such a publisher gets no feedback).
    public var transportFeedbackInterval: Duration = .milliseconds(100)
    /// Feedback packets per publisher per interval (each describes up to 500 packets it sent).
    public var maxTransportFeedbackPackets = 4
    /// Consent freshness (RFC 7675) of a latched WebRTC participant: the
    /// relay is ICE-lite and sends no periodic checks of its own, so consent
    /// is the browser's checks (authenticated Binding requests from its
    /// latched address, every ~5 s in browsers); none for this long and media
    /// to it stops: it is removed (`transportFailed`, "consent expired").
    /// Zero: not checked (only `participantTimeout` applies).
    public var consentFreshnessTimeout: Duration = .seconds(30)
    /// A WebRTC participant's DTLS handshake must complete this long after its join, or it is removed.
    public var dtlsHandshakeTimeout: Duration = .seconds(30)
    /// Whether an authenticated SRTP packet from a new address latches it
    /// without a consent check (for tools that cannot answer STUN, like
    /// ffmpeg). Off: only consent checks move media.
    public var srtpLatching = true
    /// TCP media bounds (RelayWorker+TCP; the listener's address is `Relay`'s `tcpAddresses`).
    public var tcp = RelayTCPConfig()
    /// Host (IP) announced in grants instead of the bound one (e.g. the public IP when bound to 0.0.0.0).
    public var announcedHost: String? = nil
    /// Datagrams per recvmmsg on the media socket.
    public var batchSize = 64
    /// Most datagrams queued before a `sendmmsg` (a receive batch's fan-out
    /// is sent in flushes of at most this many). Larger: longer GSO runs,
    /// fewer syscalls; smaller: the first packets of a big batch leave
    /// sooner (handing a datagram to the kernel costs ~1–1.5 µs on
    /// loopback, so this bounds that wait).
    public var sendBatchSize = 1024
    /// Socket buffer sizes of the media socket (large: receive-buffer drops are the usual failure).
    public var socketBufferSize = 8 << 20
    /// Where relay metrics are registered.
    public var metrics: MetricsRegistry = .shared
    /// Called (on the room's loop) for timeouts and latches.
    public var onEvent: (@Sendable (RelayEvent) -> Void)? = nil

    public init() {}
}

/// A room's recorder tap: every plaintext RTP packet the room forwards,
/// each decrypted RTCP compound in which a publisher sends a sender report,
/// and the room's membership and tracks as they change. Everything runs on
/// the room's loop, in the order it happens there (a track's `published`
/// comes before its first packet), on the packet path: copy what you keep
/// and hand it to another thread; never block.
public struct RTPTap: @unchecked Sendable {
    /// A forwarded RTP packet of track `ssrc` (muted tracks forward none),
    /// with its receive batch's wall-clock time (ns since the epoch; one
    /// clock read per batch, not per packet).
    public var packet: (_ ssrc: UInt32, _ kind: MediaKind, _ bytes: UnsafeRawBufferPointer, _ arrivalNanos: Int64) -> Void
    /// The whole decrypted RTCP compound holding a sender report of published track `ssrc`.
    public var senderReport: ((_ ssrc: UInt32, _ bytes: UnsafeRawBufferPointer) -> Void)?
    /// Membership and track changes; when the tap is set, the room's current
    /// participants and tracks are replayed through it first.
    public var event: ((RoomTapEvent) -> Void)?

    public init(_ packet: @escaping (_ ssrc: UInt32, _ kind: MediaKind, _ bytes: UnsafeRawBufferPointer, _ arrivalNanos: Int64) -> Void,
                senderReport: ((_ ssrc: UInt32, _ bytes: UnsafeRawBufferPointer) -> Void)? = nil,
                event: ((RoomTapEvent) -> Void)? = nil) {
        self.packet = packet
        self.senderReport = senderReport
        self.event = event
    }
}

/// What a tap hears of a room besides its packets.
public enum RoomTapEvent: Sendable, Equatable {
    case joined(participant: String)
    /// After the `unpublished` of each of its tracks.
    case left(participant: String)
    case published(RoomTrack)
    case unpublished(RoomTrack)
    /// The track's `muted` says which way.
    case muteChanged(RoomTrack)
    /// The room closed (its last participant left, or it was closed): nothing follows.
    case closed
}
