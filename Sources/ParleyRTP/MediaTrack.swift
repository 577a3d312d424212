/// One vocabulary for tracks from the protocol down to the relay: a
/// publisher describes a track (`TrackDescription`), the room knows it as a
/// `RoomTrack`. Signalling encodes both (ParleyProtocol); the relay forwards
/// by them (ParleyRelay).

/// What kind of media a track carries.
public enum MediaKind: String, Sendable, Equatable, CaseIterable {
    case audio, video
}

/// A track as a publisher declares it: in signalling's `publish`, and to the
/// relay (which uses its kind, payload type, clock rate and SSRC).
public struct TrackDescription: Sendable, Equatable {
    public var kind: MediaKind
    /// Codec name as in SDP rtpmap, e.g. `opus`, `VP8`, `H264`.
    public var codec: String
    /// RTP payload type, 0-127.
    public var payloadType: UInt8
    /// RTP clock rate in Hz.
    public var clockRate: Int
    /// Audio channels (1 when absent).
    public var channels: Int
    /// The SSRC the publisher sends with; one of those granted in `join`.
    /// Absent: the granted SSRC for `kind`.
    public var ssrc: UInt32?

    public init(kind: MediaKind, codec: String, payloadType: UInt8, clockRate: Int, channels: Int = 1, ssrc: UInt32? = nil) {
        self.kind = kind
        self.codec = codec
        self.payloadType = payloadType
        self.clockRate = clockRate
        self.channels = channels
        self.ssrc = ssrc
    }

    /// Opus audio (RFC 7587: opus/48000/2), payload type 111.
    public static func opus(ssrc: UInt32? = nil) -> TrackDescription {
        TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2, ssrc: ssrc)
    }

    /// VP8 video at 90 kHz, payload type 96.
    public static func video(ssrc: UInt32? = nil) -> TrackDescription {
        TrackDescription(kind: .video, codec: "VP8", payloadType: 96, clockRate: 90000, ssrc: ssrc)
    }
}

/// A track in a room: what the relay granted or forwards, and what other
/// participants see in signalling.
public struct RoomTrack: Sendable, Equatable {
    /// Room-unique id: `<participant>/<ssrc>`.
    public var id: String
    public var participant: String
    public var spec: TrackDescription
    public var ssrc: UInt32
    public var muted: Bool

    /// A track's id in its room.
    public static func id(participant: String, ssrc: UInt32) -> String { "\(participant)/\(ssrc)" }

    public init(participant: String, spec: TrackDescription, ssrc: UInt32, muted: Bool) {
        self.id = Self.id(participant: participant, ssrc: ssrc)
        self.participant = participant
        self.spec = spec
        self.ssrc = ssrc
        self.muted = muted
    }
}
