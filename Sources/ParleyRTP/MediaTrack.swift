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
    /// The codec's `a=fmtp` parameters when they tell variants apart (H.264
    /// profile-level-id, VP9 profile-id): see `codecKey`. Not signalled.
    public var fmtp: String?
    /// Simulcast (a WebRTC publisher's rid-based layers, lowest first): the
    /// rids whose SSRCs the relay learns from the rid header extension; `ssrc`
    /// is then the one the relay forwards the chosen layer with. Empty: one stream.
    public var rids: [String] = []

    public init(kind: MediaKind, codec: String, payloadType: UInt8, clockRate: Int, channels: Int = 1, ssrc: UInt32? = nil,
                fmtp: String? = nil, rids: [String] = []) {
        self.fmtp = fmtp
        self.rids = rids
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

extension TrackDescription {
    /// What must match for a receiver to decode what a sender sends with
    /// this codec: the name in lower case; for H.264 also the profile
    /// (profile_idc of `profile-level-id`, constrained baseline told apart;
    /// the level may differ, RFC 6184 §8.2.2) and for VP9 the `profile-id`.
    public var codecKey: String { Self.codecKey(name: codec, fmtp: fmtp) }

    public static func codecKey(name: String, fmtp: String?) -> String {
        let n = name.lowercased()
        func param(_ key: String) -> String? {
            guard let f = fmtp else { return nil }
            for p in f.split(separator: ";") {
                let kv = p.split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0].trimmingSpaces().lowercased() == key { return kv[1].trimmingSpaces().lowercased() }
            }
            return nil
        }
        switch n {
        case "h264":
            let plid = param("profile-level-id") ?? "42000a" // RFC 6184 §8.1 default
            guard plid.utf8.count == 6, let v = UInt32(plid, radix: 16) else { return n }
            let idc = UInt8(v >> 16), iop = UInt8((v >> 8) & 0xFF)
            // Constrained baseline: baseline with constraint_set1, or main/extended with the constraint flags that make it one.
            let cb = (idc == 0x42 && iop & 0x40 != 0) || (idc == 0x4D && iop & 0x80 != 0) || (idc == 0x58 && iop & 0xC0 == 0xC0)
            return cb ? "h264/cb" : "h264/\(String(idc, radix: 16))"
        case "vp9":
            let profile = param("profile-id") ?? "0"
            return profile == "0" ? n : "vp9/\(profile)"
        default:
            return n
        }
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
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
