import ParleyCore
import ParleyDTLS
import ParleyIO
import ParleyRTP
import ParleySRTP

/// What the relay needs to take a WebRTC participant (a browser): the
/// relay's DTLS context (its certificate), what the participant's SDP said
/// (its certificate fingerprint, its ICE credentials) and the payload types
/// it negotiated for what it receives. The relay is ICE-lite and the DTLS
/// server (`a=setup:passive`); SRTP keys come from the handshake.
public struct WebRTCTransport: Sendable {
    public var context: DTLSContext
    /// `a=fingerprint:sha-256` of the participant's offer.
    public var remoteFingerprint: String
    /// `a=ice-ufrag` / `a=ice-pwd` of the participant's offer: the relay's
    /// consent checks to it carry USERNAME `remoteUfrag:relayUfrag` and
    /// MESSAGE-INTEGRITY keyed with `remotePassword` (RFC 8445 §7.2.2).
    public var remoteUfrag: String
    public var remotePassword: String
    /// Payload type and codec name it receives, per kind.
    public var receive: [MediaKind: (payloadType: UInt8, codec: String)]
    /// Whether its SDP negotiated `goog-remb` for video: the relay then sends
    /// it REMB with `RelayConfig.rembBitrate` beside its receiver reports.
    public var remb: Bool
    /// Every codec it receives, by `TrackDescription.codecKey`, with its
    /// payload type (empty: `receive` alone decides).
    public var receiveCodecs: [(key: String, payloadType: UInt8)]
    /// The header extension ids its SDP negotiated.
    public var extensions: RTPHeaderExtensionMap
    /// Whether it negotiated transport-cc (with the transport-wide sequence
    /// number extension): the relay then sends it transport-wide feedback.
    public var transportCC: Bool

    public init(context: DTLSContext, remoteFingerprint: String, remoteUfrag: String, remotePassword: String,
                receive: [MediaKind: (payloadType: UInt8, codec: String)], remb: Bool = false,
                receiveCodecs: [(key: String, payloadType: UInt8)] = [], extensions: RTPHeaderExtensionMap = .init(),
                transportCC: Bool = false) {
        self.remb = remb
        self.receiveCodecs = receiveCodecs
        self.extensions = extensions
        self.transportCC = transportCC && extensions.transportSequence != 0
        self.context = context
        self.remoteFingerprint = remoteFingerprint
        self.remoteUfrag = remoteUfrag
        self.remotePassword = remotePassword
        self.receive = receive
    }
}

/// A participant's DTLS transport on the room's loop.
final class DTLSTransportState {
    let endpoint: DTLSEndpoint
    /// Where its handshake datagrams come from (and go back to).
    var address: SocketAddress?
    var timer: TimerHandle?
    /// Monotonic ms by which the handshake must be done.
    let deadlineMs: UInt64
    var connected = false

    init(endpoint: DTLSEndpoint, deadlineMs: UInt64) {
        self.endpoint = endpoint
        self.deadlineMs = deadlineMs
    }
}

extension ParticipantCrypto {
    /// Drops everything: a WebRTC participant's hook until its DTLS
    /// handshake has exported keys (nothing goes to it or comes from it in
    /// the clear).
    static let awaitingKeys = ParticipantCrypto(unprotect: { _, _ in nil }, protect: { _, _, _ in nil })
}

/// DTLS-SRTP (RFC 5764) on the media port, demultiplexed by first byte
/// 20–63 (RFC 7983). Loop only.
extension RelayWorker {
    /// Sets `p` up as a WebRTC participant (from `join`).
    func attachWebRTC(_ p: Participant, _ w: WebRTCTransport) throws(RelayError) {
        let e: DTLSEndpoint
        do { e = try DTLSEndpoint(context: w.context, role: .server, remoteFingerprint: w.remoteFingerprint) } catch {
            throw .invalidRequest("DTLS: \(error)")
        }
        p.dtls = DTLSTransportState(endpoint: e,
                                    deadlineMs: MonotonicTime.now().milliseconds + UInt64(config.dtlsHandshakeTimeout.millisecondsRoundedUp))
        p.crypto = .awaitingKeys
        if let a = w.receive[.audio] { p.audioPayloadType = a.payloadType; p.audioCodec = a.codec.lowercased() }
        if let v = w.receive[.video] { p.videoPayloadType = v.payloadType; p.videoCodec = v.codec.lowercased() }
        if w.remb { p.rembBitrate = config.rembBitrate }
        p.receiveCodecs = w.receiveCodecs
        if !w.extensions.isEmpty { p.extensions = w.extensions }
        if w.transportCC, config.transportFeedbackInterval > .zero {
            p.transportFeedback = TransportFeedbackRecorder()
            startTransportFeedback()
        }
    }

    /// A DTLS datagram. It is taken from a participant's latched address, or
    /// from the address its consent check is running to (the browser starts
    /// DTLS as soon as its own checks succeed, which may be before it has
    /// answered ours). Anything else is dropped and counted.
    func handleDTLS(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) {
        var owner = byAddress[source]
        if owner?.dtls == nil {
            owner = consentChecks.values.first { $0.consent?.address == source && $0.dtls != nil }
        }
        guard let p = owner, let d = p.dtls else {
            metrics.dtlsUnknownSource.inc()
            tally.drop(.unknownSource)
            return
        }
        let (input, out) = d.endpoint.receive(bytes)
        switch input {
        case .malformed: metrics.dtlsMalformed.inc(); tally.drop(.malformed); return
        case .applicationData: metrics.dtlsApplicationData.inc()
        case .handshake: break
        }
        p.lastSeenMs = nowMs
        d.address = source
        for o in out { o.withUnsafeBytes { send($0, to: source) } }
        dtlsProgressed(p)
    }

    /// After anything the endpoint did: keys installed, failure reported, or the retransmission timer set.
    func dtlsProgressed(_ p: Participant) {
        guard let d = p.dtls, !p.removed else { return }
        if let h = d.timer { loop.cancelTimer(h); d.timer = nil }
        switch d.endpoint.state {
        case .handshaking:
            if let delay = d.endpoint.timerDelay() {
                d.timer = loop.scheduleTimer(after: delay) { [weak self, weak p] in
                    guard let self, let p, let d = p.dtls else { return }
                    d.timer = nil
                    tickClock()
                    let out = d.endpoint.handleTimer()
                    if let a = d.address { for o in out { o.withUnsafeBytes { self.send($0, to: a) } } }
                    dtlsProgressed(p)
                    flush()
                }
            }
        case .connected(let keys):
            guard !d.connected else { return }
            d.connected = true
            do {
                p.crypto = try .srtp(inbound: keys.remote, outbound: keys.local, metrics: srtpMetrics)
            } catch {
                dtlsFailed(p, reason: "SRTP setup: \(error)")
                return
            }
            metrics.dtlsConnected.inc()
            // Its decoders need a keyframe of every video track it receives.
            for t in p.receiving where t.kind == .video { requestKeyframe(t, fir: false) }
        case .failed(let e):
            if e == .timedOut { metrics.dtlsTimedOut.inc() } else { metrics.dtlsFailed.inc() }
            dtlsFailed(p, reason: e.description)
        }
    }

    /// The handshake failed or timed out: the participant's transport is
    /// closed (it leaves the room) and the signalling layer is told.
    func dtlsFailed(_ p: Participant, reason: String) {
        let room = p.room
        remove(p)
        closeIfEmpty(room)
        config.onEvent?(.transportFailed(room: room.name, name: p.name, reason: reason))
    }

    /// Housekeeping: handshakes past their deadline fail.
    func checkDTLSDeadlines(_ p: Participant) {
        guard let d = p.dtls, !d.connected, nowMs > d.deadlineMs else { return }
        d.endpoint.timeOut()
        dtlsProgressed(p)
    }
}
