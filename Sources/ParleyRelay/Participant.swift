import ParleyRTP
import ParleyCore
import ParleyIO
import ParleyDTLS

/// Hop-by-hop SRTP slot for one participant (filled by ParleySRTP contexts
/// in the signalling layer; the relay never builds keys itself).
///
/// Both closures run on the room's loop, on the packet path: they must not
/// allocate or block. `unprotect` uses the participant's inbound context
/// (what it publishes), `protect` its outbound context (what it receives).
public struct ParticipantCrypto: @unchecked Sendable {
    /// Turns an SRTP (`isRTCP == false`) or SRTCP packet into plaintext in
    /// place. Returns the plaintext length, or nil when authentication fails
    /// (the packet is dropped and counted as `auth_failed`).
    public var unprotect: (_ packet: UnsafeMutableRawBufferPointer, _ isRTCP: Bool) -> Int?
    /// Protects a plaintext packet in place: the first `length` bytes of
    /// `buffer` hold it and `buffer` has room for the tag. Returns the
    /// protected length, or nil to drop.
    public var protect: (_ buffer: UnsafeMutableRawBufferPointer, _ length: Int, _ isRTCP: Bool) -> Int?

    public init(unprotect: @escaping (_ packet: UnsafeMutableRawBufferPointer, _ isRTCP: Bool) -> Int?,
                protect: @escaping (_ buffer: UnsafeMutableRawBufferPointer, _ length: Int, _ isRTCP: Bool) -> Int?) {
        self.unprotect = unprotect
        self.protect = protect
    }
}

/// One member of a room: a media address (once latched), the tracks it
/// publishes and the tracks it receives. Loop only.
final class Participant {
    /// Its name in the room (the signalling's).
    let name: String
    unowned let room: Room
    let ufrag: String
    let password: String
    /// `password` as bytes: the MESSAGE-INTEGRITY key (RFC 8489 §9.2.2 short-term).
    let key: [UInt8]
    /// The client's credentials for the relay's consent checks (given in the
    /// join grant): the relay's requests carry USERNAME `consentUfrag:ufrag`
    /// and MESSAGE-INTEGRITY keyed with `consentPassword`, and so must the answer.
    let consentUfrag: String
    let consentPassword: String
    let consentUsername: [UInt8]
    let consentKey: [UInt8]
    /// The latched media address; nil until a consent check there succeeds
    /// (or an SRTP packet from there authenticates).
    var address: SocketAddress?
    /// Where RTCP to this participant goes when it sends RTCP from another
    /// port than its media (ffmpeg: RTP port + 1); nil means `address`.
    var rtcpAddress: SocketAddress?
    /// Recent Binding request transaction IDs (replays move nothing).
    var recentTransactions = TransactionRing()
    /// The consent check in flight, if any (one per participant).
    var consent: ConsentCheck?
    /// Monotonic ms of the last packet of any kind from this participant.
    var lastSeenMs: UInt64
    /// What the join granted: the SSRCs (always set) it may publish.
    var granted: [TrackDescription] = []
    /// Tracks this participant publishes (1–3 usually: a linear scan beats a map).
    var published: [Track] = []
    /// Tracks this participant receives.
    var receiving: [Track] = []
    var crypto: ParticipantCrypto?
    /// A WebRTC participant's DTLS-SRTP transport (nil for SDES): `crypto`
    /// drops everything until its handshake has exported keys.
    var dtls: DTLSTransportState?
    /// The payload types it receives with, per kind (WebRTC: what its SDP
    /// negotiated; 0xFF: as published); forwarded RTP of the same codec with
    /// another payload type is rewritten to it.
    var audioPayloadType: UInt8 = 0xFF
    var videoPayloadType: UInt8 = 0xFF
    /// The codec names negotiated for `audioPayloadType` and `videoPayloadType` (lower case).
    var audioCodec = "", videoCodec = ""
    /// WebRTC: every codec it receives, by `TrackDescription.codecKey`, with
    /// its payload type (empty: `audioPayloadType`/`videoPayloadType` alone decide).
    var receiveCodecs: [(key: String, payloadType: UInt8)] = []
    /// The header extension ids it negotiated (nil: none; SDES peers): what
    /// it publishes is read with them, what it receives is renumbered to them.
    var extensions: RTPHeaderExtensionMap?
    /// The transport-wide sequence numbers of what the relay sends it (its own count).
    var transportSequenceOut: UInt16 = 0
    /// Arrival times of what it publishes, for the transport-wide feedback
    /// the relay sends it (nil: it did not negotiate transport-cc).
    var transportFeedback: TransportFeedbackRecorder?
    /// The media SSRC of the feedback sent to it: the SSRC of the last packet
    /// it sent with a transport-wide sequence number. libwebrtc drops
    /// transport feedback whose media SSRC is none of its own streams', so
    /// the track's SSRC will not do for a simulcast track (the relay picks
    /// that one; the browser sends its layers under SSRCs of its own).
    var transportFeedbackSSRC: UInt32 = 0
    /// Monotonic ms of its last proof of consent (RFC 7675): latched, or an
    /// authenticated Binding request from its latched address.
    var lastConsentMs: UInt64 = 0
    /// Bits/s announced to it in REMB beside its receiver reports (0: none; a WebRTC publisher that negotiated goog-remb).
    var rembBitrate: UInt64 = 0

    /// The payload type to rewrite `t`'s RTP to for this participant, or 0xFF to leave it.
    @inline(__always) func rewrittenPayloadType(_ t: Track) -> UInt8 {
        if !receiveCodecs.isEmpty {
            for c in receiveCodecs where c.key == t.codecKey { return c.payloadType == t.spec.payloadType ? 0xFF : c.payloadType }
            return 0xFF
        }
        let pt = t.kind == .audio ? audioPayloadType : videoPayloadType
        guard pt != 0xFF, pt != t.spec.payloadType else { return 0xFF }
        return t.codecName == (t.kind == .audio ? audioCodec : videoCodec) ? pt : 0xFF
    }
    var packetsIn = 0
    var bytesIn = 0
    var removed = false

    init(name: String, room: Room, ufrag: String, password: String, consentUfrag: String, consentPassword: String,
         nowMs: UInt64) {
        self.name = name
        self.room = room
        self.ufrag = ufrag
        self.password = password
        key = Array(password.utf8)
        self.consentUfrag = consentUfrag
        self.consentPassword = consentPassword
        consentUsername = Array("\(consentUfrag):\(ufrag)".utf8)
        consentKey = Array(consentPassword.utf8)
        lastSeenMs = nowMs
    }

    /// Where RTCP for this participant goes.
    var rtcpDestination: SocketAddress? { rtcpAddress ?? address }

    /// The published track with this SSRC, if any.
    @inline(__always) func publishedTrack(_ ssrc: UInt32) -> Track? {
        for t in published where t.ssrc == ssrc { return t }
        return nil
    }

    /// Whether `ssrc` was granted to it (published or not). Off the packet
    /// path: only asked about RTP that matches no published track.
    func isGranted(_ ssrc: UInt32) -> Bool { granted.contains { $0.ssrc == ssrc } }
}
