import ParleyRTP
import ParleyProtocol
import ParleyAuth
import Foundation
import ParleyCore
import ParleyRelay
import ParleySRTP
import ParleySDP
import ParleyDTLS

/// The signalling layer's view of the relay (`MediaBackend` over
/// `ParleyRelay.Relay`), with hop-by-hop SRTP: each participant gets an
/// inbound context keyed with its `send` key (the relay unprotects what it
/// publishes) and an outbound context keyed with its `receive` key (the relay
/// protects what it forwards to it), installed as the relay's per-participant
/// crypto hook (`ParticipantCrypto.srtp`, in ParleyRelay).
///
/// Called on the signalling loop. It keeps no state of its own: the relay
/// knows participants by their signalling names. A join is one relay
/// operation (`Relay.join`), answered on the room's loop (the caller hops
/// back); the other calls post their operation and return.
public final class RelayMediaBackend: MediaBackend, Sendable {
    public let relay: Relay
    /// Host advertised in join replies (the relay's endpoint host otherwise).
    let advertisedHost: String?
    private let metrics = SRTPMetrics.shared
    /// The relay's DTLS certificate and settings for WebRTC peers (nil: none are taken).
    public let dtls: DTLSContext?

    /// The transports whose candidates WebRTC answers list (`webrtc-candidates`).
    let webrtcTransports: Set<ICECandidate.Transport>
    /// More hosts announced for the same ports (the other address family).
    let otherHosts: [String]

    /// `dtls`: the DTLS context for WebRTC peers; by default one with a
    /// certificate made now (one per process: its fingerprint goes in every answer).
    /// `webrtcTransports`: which of the relay's candidates go into SDP
    /// answers (`udp`, and `tcp` for ICE-TCP when the relay has a TCP media port).
    /// `otherHosts`: more addresses of the same sockets clients may use (the
    /// other address family's, when bound to `::`): candidates too.
    public init(relay: Relay, advertisedHost: String? = nil, dtls: DTLSContext? = nil,
                webrtcTransports: Set<String> = ["udp", "tcp"], otherHosts: [String] = []) {
        self.relay = relay
        self.otherHosts = otherHosts
        self.advertisedHost = advertisedHost
        self.webrtcTransports = Set(webrtcTransports.compactMap(ICECandidate.Transport.init(rawValue:)))
        self.dtls = dtls ?? (try? DTLSContext(certificate: .generate()))
    }

    public func joinWebRTC(room: String, participant: String, offer: WebRTCOffer, publish: Bool, subscribe: Bool,
                           completion: @escaping @Sendable (Result<WebRTCGrant, SignallingError>) -> Void) {
        guard let dtls else {
            completion(.failure(SignallingError(.unsupported, "DTLS is not available on this server")))
            return
        }
        // What the peer sends: the first SSRC of each section it sends on, with the codec taken for it.
        var tracks: [TrackDescription] = []
        var receive: [MediaKind: (payloadType: UInt8, codec: String)] = [:]
        var receiveCodecs: [(key: String, payloadType: UInt8)] = []
        for s in offer.sections {
            guard let c = s.codec, let kind = MediaKind(rawValue: s.kind) else { continue }
            if receive[kind] == nil { receive[kind] = (c.payloadType, c.name) }
            for c in s.codecs {
                let key = TrackDescription.codecKey(name: c.name, fmtp: c.fmtp)
                if !receiveCodecs.contains(where: { $0.key == key }) { receiveCodecs.append((key, c.payloadType)) }
            }
            if publish, s.direction.sends, !s.rids.isEmpty {
                // Simulcast: the layers' SSRCs come with their rid; subscribers get the chosen layer on an SSRC of the relay's.
                tracks.append(TrackDescription(kind: kind, codec: c.name, payloadType: c.payloadType, clockRate: c.clockRate,
                                               channels: c.channels, ssrc: UInt32.random(in: 1..<0x8000_0000), fmtp: c.fmtp,
                                               rids: s.rids))
            } else if publish, s.direction.sends, let ssrc = s.ssrcs.first {
                tracks.append(TrackDescription(kind: kind, codec: c.name, payloadType: c.payloadType, clockRate: c.clockRate,
                                               channels: c.channels, ssrc: ssrc, fmtp: c.fmtp))
            }
        }
        let offered = tracks
        let ids = offer.extensionIDs
        typealias E = WebRTCOffer.Extension
        let extensions = RTPHeaderExtensionMap(mid: ids[E.mid] ?? 0, absSendTime: ids[E.absSendTime] ?? 0,
                                               transportSequence: ids[E.transportWideCC] ?? 0, audioLevel: ids[E.audioLevel] ?? 0,
                                               rid: ids[E.rid] ?? 0, repairedRid: ids[E.repairedRid] ?? 0)
        let transportCC = offer.sections.contains { offer.transportCC($0) }
        let transport = WebRTCTransport(context: dtls, remoteFingerprint: offer.fingerprint, remoteUfrag: offer.iceUfrag,
                                        remotePassword: offer.icePassword, receive: receive,
                                        remb: !transportCC && offer.sections.contains { $0.kind == "video" && $0.codec?.feedback.contains("goog-remb") == true },
                                        receiveCodecs: receiveCodecs, extensions: extensions, transportCC: transportCC)
        relay.join(room: room, name: participant, tracks: offered, crypto: nil, webrtc: transport) { [self] result in
            switch result {
            case .failure(.ssrcInUse(let s)):
                completion(.failure(SignallingError(.badRequest, "SSRC \(s) of the offer is in use in this room: offer again with another")))
            case .failure(let e):
                completion(.failure(Self.map(e)))
            case .success(let g):
                let media = grant(g)
                let answer = offer.answer(ufrag: g.ufrag, password: g.password, fingerprint: dtls.certificate.fingerprint,
                                          host: media.host, port: media.port, sessionID: UInt64.random(in: 1..<(1 << 62)),
                                          canSend: subscribe, canReceive: publish, candidates: media.sdpCandidates)
                completion(.success(WebRTCGrant(media: media, answer: answer, tracks: offered,
                                                fingerprint: dtls.certificate.fingerprint)))
            }
        }
    }

    public func join(room: String, participant: String, publish: Bool, subscribe: Bool, keys: SRTPSessionKeys,
                     completion: @escaping @Sendable (Result<MediaGrant, SignallingError>) -> Void) {
        let crypto: ParticipantCrypto
        do { crypto = try .srtp(inbound: keys.send, outbound: keys.receive, metrics: metrics) } catch {
            completion(.failure(SignallingError(.internalError, "SRTP setup failed: \(error)")))
            return
        }
        join(room: room, participant: participant, publish: publish, crypto: crypto, attemptsLeft: 4, completion: completion)
    }

    /// One `Relay.join`; on an SSRC collision (1 in 2^31 per track) it asks
    /// again with new random SSRCs.
    private func join(room: String, participant: String, publish: Bool, crypto: ParticipantCrypto, attemptsLeft: Int,
                      completion: @escaping @Sendable (Result<MediaGrant, SignallingError>) -> Void) {
        // SSRCs below 2^31: tools that take the SSRC as a signed int (ffmpeg's -ssrc) can use them as is.
        let tracks: [TrackDescription] = publish
            ? [.opus(ssrc: UInt32.random(in: 1..<0x8000_0000)), .video(ssrc: UInt32.random(in: 1..<0x8000_0000))] : []
        relay.join(room: room, name: participant, tracks: tracks, crypto: crypto) { [self] result in
            if case .failure(.ssrcInUse) = result, attemptsLeft > 1 {
                join(room: room, participant: participant, publish: publish, crypto: crypto, attemptsLeft: attemptsLeft - 1,
                     completion: completion)
                return
            }
            completion(result.map(grant).mapError(Self.map))
        }
    }

    private func grant(_ g: ParticipantGrant) -> MediaGrant {
        var ssrcs: [MediaKind: UInt32] = [:]
        for t in g.tracks { ssrcs[t.spec.kind] = t.ssrc }
        let (host, port) = Self.split(g.endpoint)
        var m = MediaGrant(host: advertisedHost ?? host, port: port, iceUfrag: g.ufrag, icePassword: g.password,
                           consentUfrag: g.consentUfrag, consentPassword: g.consentPassword, ssrcs: ssrcs,
                           timeoutSeconds: Int(relay.participantTimeout.components.seconds))
        // UDP first (the grant's host, then the other family's), then TCP the same way.
        let hosts = [m.host] + otherHosts
        m.candidates = hosts.map { ICECandidate(.udp, host: $0, port: port) }
        if let t = g.tcpEndpoint {
            let (tcpHost, tcpPort) = Self.split(t)
            m.candidates += ([advertisedHost ?? tcpHost] + otherHosts).map { ICECandidate(.tcp, host: $0, port: tcpPort) }
        }
        m.sdpCandidates = m.candidates.filter { webrtcTransports.contains($0.transport) }
        if m.sdpCandidates.isEmpty { m.sdpCandidates = m.candidates }
        return m
    }

    public func leave(room: String, participant: String) {
        relay.leave(room: room, name: participant)
    }

    public func keepAlive(room: String, participant: String) {
        relay.keepAlive(room: room, name: participant)
    }

    public func publish(room: String, participant: String, track: TrackDescription, ssrc: UInt32) {
        var t = track
        t.ssrc = ssrc
        relay.publish(room: room, name: participant, track: t)
    }

    public func unpublish(room: String, participant: String, ssrc: UInt32) {
        relay.unpublish(room: room, name: participant, ssrc: ssrc)
    }

    public func subscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32) {
        relay.setSubscribed(room: room, subscriber: subscriber, ssrc: ssrc, true)
    }

    public func unsubscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32) {
        relay.setSubscribed(room: room, subscriber: subscriber, ssrc: ssrc, false)
    }

    public func setLayer(room: String, subscriber: String, ssrc: UInt32, layer: Int) {
        relay.setLayer(room: room, subscriber: subscriber, ssrc: ssrc, layer: layer)
    }

    public func setMuted(room: String, participant: String, ssrc: UInt32, muted: Bool) {
        relay.setMuted(room: room, ssrc: ssrc, muted)
    }

    static func map(_ e: RelayError) -> SignallingError {
        switch e {
        case .roomFull(let r, let l): return SignallingError(.roomFull, "room \(r) is full (\(l) participants)")
        case .tooManyRooms: return SignallingError(.roomFull, "the server carries its maximum number of rooms")
        case .noSuchTrack(let s): return SignallingError(.unknownTrack, "no track with SSRC \(s)")
        case .invalidRequest(let m): return SignallingError(.badRequest, m)
        default: return SignallingError(.internalError, e.description)
        }
    }

    static func split(_ endpoint: String) -> (String, Int) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
            return (endpoint, 0)
        }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}
