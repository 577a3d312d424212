import ParleySDP
import ParleyRTP
import ParleyWeb
import ParleyAuth
import ParleyCore
import ParleyProtocol
import ParleySRTP
import ParleyIO

/// The parts the signalling state machine talks to, as small protocols so
/// the state machine is tested with bytes alone and the daemon plugs in the
/// real ones (JWT verification, the relay, the WebSocket connection).

extension AuthClaims {
    /// The room a connection authenticating with these claims names: the
    /// one asked for (which the token must allow), else the token's, else
    /// none (a token valid for any room, or for chat only).
    public func resolveRoom(requested: String?) throws(SignallingError) -> String? {
        if let requested, !mayJoin(requested) {
            throw SignallingError(.wrongRoom, "the token is for room \"\(room ?? "")\", not \"\(requested)\"")
        }
        return requested ?? room
    }

    /// Whether these claims allow joining `room`: the token's room, any room
    /// for a token without one, any room for an administrator.
    public func mayJoin(_ requested: String) -> Bool { room == nil || room == requested || isAdmin }
}

extension TokenError {
    public var signallingError: SignallingError {
        SignallingError(self == .expired ? .tokenExpired : .invalidToken, description)
    }
}

/// The two keys of one participant's media session, named from the client's side:
/// the client protects what it sends with `send` (the relay unprotects with it),
/// and unprotects what it receives with `receive` (the relay protects with it).
public struct SRTPSessionKeys: Sendable, Equatable {
    public var send: SRTPKeyMaterial
    public var receive: SRTPKeyMaterial

    public init(send: SRTPKeyMaterial, receive: SRTPKeyMaterial) { self.send = send; self.receive = receive }

    /// Two fresh keys from the system CSPRNG.
    public static func random(_ suite: SRTPSuite) -> SRTPSessionKeys {
        SRTPSessionKeys(send: .random(suite: suite), receive: .random(suite: suite))
    }

    public var json: JSONValue {
        ["suite": .string(send.suite.sdesName), "send": .string(send.inlineKeyParams), "receive": .string(receive.inlineKeyParams)]
    }
}

/// What the media side grants a joining participant.
public struct MediaGrant: Sendable, Equatable {
    /// Where to send RTP/RTCP/STUN (the room's UDP socket).
    public var host: String
    public var port: Int
    /// STUN short-term credentials: the client sends Binding requests with
    /// USERNAME `iceUfrag` and MESSAGE-INTEGRITY keyed with `icePassword`.
    public var iceUfrag: String
    public var icePassword: String
    /// The reverse direction (consent checks, RFC 7675): before media goes
    /// to a new address, the relay sends a Binding request there with
    /// USERNAME `consentUfrag:iceUfrag` and MESSAGE-INTEGRITY keyed with
    /// `consentPassword`; the client answers it, keyed with the same.
    public var consentUfrag: String
    public var consentPassword: String
    /// SSRCs the participant may publish with, one per kind.
    public var ssrcs: [MediaKind: UInt32]
    /// Seconds of silence after which the media session ends (0: not told).
    /// A client that sends nothing on its media port pings more often.
    public var timeoutSeconds: Int
    /// Every endpoint of the room's loop a client may use: UDP (`host`:`port`
    /// first), TCP (RFC 4571) when on, each announced address family
    /// (`media.candidates` of the join reply).
    public var candidates: [ICECandidate] = []
    /// The candidates a WebRTC answer lists (`webrtc-candidates`); empty: `host`:`port` over UDP.
    public var sdpCandidates: [ICECandidate] = []

    public init(host: String, port: Int, iceUfrag: String, icePassword: String, consentUfrag: String = "",
                consentPassword: String = "", ssrcs: [MediaKind: UInt32], timeoutSeconds: Int = 0) {
        self.timeoutSeconds = timeoutSeconds
        self.host = host
        self.port = port
        self.iceUfrag = iceUfrag
        self.icePassword = icePassword
        self.consentUfrag = consentUfrag
        self.consentPassword = consentPassword
        self.ssrcs = ssrcs
    }
}

/// The relay as the signalling state machine sees it. Called on the
/// signalling loop; nothing here blocks. `join` answers through its
/// completion, which the backend may call on any thread (the room's loop);
/// `CallService` hops back to the signalling loop with
/// `SignallingCore.onSignallingThread`. The rest are fire-and-forget: the relay
/// applies them in the order they are made, after the join, and the state
/// machine has checked them already (a failure there means the relay
/// removed the participant itself, which it reports as a timeout).
public protocol MediaBackend: AnyObject {
    /// Creates the room if needed, adds the participant with its SSRCs
    /// granted and its SRTP keys installed, and answers with the grant.
    func join(room: String, participant: String, publish: Bool, subscribe: Bool, keys: SRTPSessionKeys,
              completion: @escaping @Sendable (Result<MediaGrant, SignallingError>) -> Void)
    /// Removes the participant and everything it published or subscribed to.
    func leave(room: String, participant: String)
    /// Starts forwarding `ssrc` from this publisher (one it was granted).
    func publish(room: String, participant: String, track: TrackDescription, ssrc: UInt32)
    /// Stops forwarding `ssrc`; its subscriptions end with it.
    func unpublish(room: String, participant: String, ssrc: UInt32)
    /// Forwards `ssrc` of `publisher` to `subscriber` (as is: the SSRC is the publisher's).
    func subscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32)
    func unsubscribe(room: String, subscriber: String, publisher: String, ssrc: UInt32)
    /// A muted track is not forwarded.
    func setMuted(room: String, participant: String, ssrc: UInt32, muted: Bool)
    /// The participant pinged: count it as activity for its media timeout.
    func keepAlive(room: String, participant: String)
    /// Which simulcast layer of `ssrc` (0: the lowest) `subscriber` receives; the relay switches at the layer's next keyframe.
    func setLayer(room: String, subscriber: String, ssrc: UInt32, layer: Int)
    /// Joins a WebRTC peer from its SDP offer: its offered SSRCs granted,
    /// ICE-lite and DTLS-SRTP on the media port; answers with the grant and
    /// the SDP answer.
    func joinWebRTC(room: String, participant: String, offer: WebRTCOffer, publish: Bool, subscribe: Bool,
                    completion: @escaping @Sendable (Result<WebRTCGrant, SignallingError>) -> Void)
}

extension MediaBackend {
    public func keepAlive(room: String, participant: String) {}
    public func setLayer(room: String, subscriber: String, ssrc: UInt32, layer: Int) {}
    public func joinWebRTC(room: String, participant: String, offer: WebRTCOffer, publish: Bool, subscribe: Bool,
                           completion: @escaping @Sendable (Result<WebRTCGrant, SignallingError>) -> Void) {
        completion(.failure(SignallingError(.unsupported, "this server takes no WebRTC peers")))
    }
}

/// What a WebRTC join is granted: the media grant, the SDP answer, and the
/// tracks of the offer the peer sends (published at once).
public struct WebRTCGrant: Sendable, Equatable {
    public var media: MediaGrant
    public var answer: String
    public var tracks: [TrackDescription]
    /// The server's DTLS certificate fingerprint (later answers repeat it).
    public var fingerprint: String

    public init(media: MediaGrant, answer: String, tracks: [TrackDescription], fingerprint: String) {
        self.media = media
        self.answer = answer
        self.tracks = tracks
        self.fingerprint = fingerprint
    }
}

/// The server's WebSocket connections are what sessions write to.
extension WebSocketConnection: SignallingTransport {}

/// The connection a session writes to. Implementations are thread-safe: the
/// state machine calls them from the signalling loop, and they hand the
/// bytes to the connection's event loop.
public protocol SignallingTransport: AnyObject, Sendable {
    func send(text: String)
    /// Sends a close frame with `code` and closes the connection.
    func close(code: UInt16, reason: String)
}

/// The signalling thread as the state machine sees it: timers (grace
/// periods, auth timeouts) and a way back onto it from other threads
/// (completions of the media backend). The daemon's is an `EventLoop`;
/// state-machine tests use one they drive by hand.
public protocol SignallingScheduler: AnyObject, Sendable {
    /// Runs `body` on the signalling thread after `seconds`. Signalling thread only.
    func schedule(afterSeconds seconds: Double, _ body: @escaping () -> Void)
    /// Runs `task` on the signalling thread soon. Any thread.
    @discardableResult
    func execute(_ task: @escaping @Sendable () -> Void) -> Bool
}

extension EventLoop: SignallingScheduler {
    public func schedule(afterSeconds seconds: Double, _ body: @escaping () -> Void) {
        scheduleTimer(after: .milliseconds(Int64((seconds * 1000).rounded(.up))), body)
    }
}
