import ParleyRTP
import ParleyCore
import ParleyIO

/// The relay's control API, safe from any thread: one `RelayWorker` per
/// event loop (each with its media socket), and a `RoomDirectory` saying
/// which loop carries which room.
///
/// Every operation is one hop: it posts its work to the room's loop with
/// `loop.execute` and calls `completion` there, on that loop's thread, with
/// the answer. Nothing blocks and nothing waits; a caller that wants the
/// answer on its own thread hops back itself (the signalling backend posts
/// to its queue). Operations on one room run in the order they were posted.
/// An operation on a room nobody carries fails at once with `noSuchRoom`, on
/// the caller's thread; one after `shutdown` fails with `closed`. A nil
/// completion makes an operation fire-and-forget.
public final class Relay: Sendable {
    public typealias Completion<T> = @Sendable (Result<T, RelayError>) -> Void

    /// One worker per loop, in the order of the loops given.
    public let workers: [RelayWorker]
    /// Where rooms are placed (least-loaded loop) and found.
    public let directory: any RoomDirectory
    private let config: RelayConfig
    /// `parley_relay_control_operations_total`: every `execute` this API posts.
    private let operations: Counter

    /// Binds one media socket per loop (`mediaAddresses[i]` on `loops[i]`)
    /// and starts the workers. The loops must be running (an
    /// `EventLoopGroup`'s); call from any thread but a loop thread.
    ///
    /// `tcpAddresses`: a TCP media listener per loop (RFC 4571, ICE-TCP
    /// passive), bounded by `config.tcp`; nil: no media over TCP.
    public init(loops: [EventLoop], mediaAddresses: [SocketAddress], tcpAddresses: [SocketAddress]? = nil,
                config: RelayConfig = RelayConfig(), directory: (any RoomDirectory)? = nil) throws(RelayError) {
        precondition(!loops.isEmpty && loops.count == mediaAddresses.count, "one media address per loop")
        precondition(tcpAddresses == nil || tcpAddresses!.count == loops.count, "one TCP media address per loop")
        let admission = TCPMediaAdmission(maxTotal: config.tcp.maxConnections, maxPerIP: config.tcp.maxConnectionsPerIP)
        self.config = config
        let directory = directory ?? LocalRoomDirectory(loopCount: loops.count)
        self.directory = directory
        operations = config.metrics.counter("parley_relay_control_operations_total",
                                            help: "Control operations posted to a room's event loop (a join is one).")
        var ws: [RelayWorker] = []
        for (i, (loop, addr)) in zip(loops, mediaAddresses).enumerated() {
            let r: Result<RelayWorker, RelayError>
            do {
                r = try loop.submit { () -> Result<RelayWorker, RelayError> in
                    Result { () throws(RelayError) in
                        try RelayWorker(loop: loop, index: i, bindTo: addr, config: config, directory: directory,
                                        tcp: tcpAddresses?[i], tcpAdmission: admission)
                    }
                }
            } catch {
                r = .failure(.bindFailed(address: addr.description, reason: "\(error)"))
            }
            switch r {
            case .success(let w): ws.append(w)
            case .failure(let e):
                for w in ws { try? w.loop.submit { w.close() } }
                throw e
            }
        }
        workers = ws
    }

    /// How long a participant may send nothing before it is removed.
    public var participantTimeout: Duration { config.participantTimeout }

    /// The media endpoints, one per loop (`host:port`).
    public var endpoints: [String] { workers.map(\.endpoint) }
    /// The TCP media endpoints, one per loop, when TCP media is on.
    public var tcpEndpoints: [String] { workers.compactMap(\.tcpEndpoint) }

    /// Control operations posted to loops so far (every operation is one;
    /// the metric `parley_relay_control_operations_total` of the relay's registry).
    public var controlOperations: Int { operations.current }

    /// Names of the open rooms.
    public var roomNames: [String] { directory.roomNames }

    /// Closes every room and socket, each loop's on the loop, and returns
    /// when all have. Not from a loop thread.
    public func shutdown() {
        for w in workers { try? w.loop.submit { w.close() } }
    }

    // MARK: Operations (completion runs on the room's loop)

    /// Joins participant `name` to `room` in one hop: the room opens on the
    /// least-loaded loop if nobody carries it, the participant is added with
    /// the SSRCs of `tracks` granted (reserved: `publish` starts one), its
    /// SRTP hooks are installed, and the grant is the answer. It receives
    /// nothing until it subscribes. A participant of that name already in
    /// the room is replaced. With `webrtc`, it is a WebRTC participant: ICE-lite
    /// and DTLS-SRTP on the media port, its keys from the handshake.
    public func join(room: String, name: String, tracks: [TrackDescription], crypto: ParticipantCrypto? = nil,
                     webrtc: WebRTCTransport? = nil, completion: @escaping Completion<ParticipantGrant>) {
        join(on: directory.place(room, on: nil), room: room, name: name, tracks: tracks, crypto: crypto, webrtc: webrtc,
             completion: completion)
    }

    private func join(on i: Int, room: String, name: String, tracks: [TrackDescription], crypto: ParticipantCrypto?,
                      webrtc: WebRTCTransport?, completion: @escaping Completion<ParticipantGrant>) {
        let posted = post(i) { [self] w in
            // The room closed (its last participant left) after it was looked
            // up and has been placed elsewhere since: follow it there.
            if !w.carries(room), case let j = directory.place(room, on: i), j != i {
                join(on: j, room: room, name: name, tracks: tracks, crypto: crypto, webrtc: webrtc, completion: completion)
                return
            }
            completion(w.join(room: room, name: name, tracks: tracks, crypto: crypto, webrtc: webrtc))
        }
        if !posted { completion(.failure(.closed)) }
    }

    /// Removes participant `name`, its tracks and its subscriptions; the
    /// room closes with its last participant.
    public func leave(room: String, name: String, completion: Completion<Void>? = nil) {
        onRoom(room, completion) { $0.leave(room: room, name: name) }
    }

    /// Publishes `track` (its `ssrc` one granted to `name` at join): its RTP is forwarded to subscribers and kept for
    /// retransmission from now on.
    public func publish(room: String, name: String, track: TrackDescription, completion: Completion<RoomTrack>? = nil) {
        onRoom(room, completion) { $0.publish(room: room, name: name, track: track) }
    }

    /// Ends `name`'s track `ssrc`: its subscriptions and retransmission ring
    /// go, and RTP on the SSRC (still granted) is dropped as `unpublished`.
    public func unpublish(room: String, name: String, ssrc: UInt32, completion: Completion<Void>? = nil) {
        onRoom(room, completion) { $0.unpublish(room: room, name: name, ssrc: ssrc) }
    }

    /// Subscribes (`true`) or unsubscribes participant `subscriber` to/from track `ssrc`.
    public func setSubscribed(room: String, subscriber: String, ssrc: UInt32, _ subscribed: Bool,
                              completion: Completion<Void>? = nil) {
        onRoom(room, completion) { $0.setSubscribed(room: room, subscriber: subscriber, ssrc: ssrc, subscribed) }
    }

    /// Which layer (0: the lowest) of simulcast track `ssrc` `subscriber` receives.
    public func setLayer(room: String, subscriber: String, ssrc: UInt32, layer: Int, completion: Completion<Void>? = nil) {
        onRoom(room, completion) { $0.setLayer(room: room, subscriber: subscriber, ssrc: ssrc, layer: layer) }
    }

    /// Mutes or unmutes track `ssrc` for everyone.
    public func setMuted(room: String, ssrc: UInt32, _ muted: Bool, completion: Completion<Void>? = nil) {
        onRoom(room, completion) { $0.setMuted(room: room, ssrc: ssrc, muted) }
    }

    /// Starts (or with nil stops) a room's recorder tap: every plaintext RTP
    /// packet the room forwards, its publishers' sender reports and its
    /// membership changes, on the room's loop (see `RTPTap`). The tap goes
    /// with the room when it closes.
    public func setTap(room: String, _ tap: RTPTap?, completion: Completion<Void>? = nil) {
        onRoom(room, completion) { $0.setTap(room: room, tap) }
    }

    /// Counts as activity for the participant's timeout, as a packet from it
    /// would: for a receive-only tool that sends nothing on its media port
    /// (ffmpeg reading an SDP) while its signalling connection shows it is
    /// there. Moves nothing.
    public func keepAlive(room: String, name: String) {
        onRoom(room, nil) { $0.keepAlive(room: room, name: name) }
    }

    /// A snapshot of a room's participants, tracks and counters.
    public func stats(room: String, completion: @escaping Completion<RoomStats>) {
        onRoom(room, completion) { $0.stats(room: room) }
    }

    /// Closes a room and removes its participants.
    public func closeRoom(_ room: String, completion: Completion<Void>? = nil) {
        onRoom(room, completion) { $0.closeRoom(room) }
    }

    /// Latches a fixed address for a participant without STUN. Trusted
    /// in-process callers only (`parley bench relay`, in ParleyBench: public
    /// for it alone).
    public func latch(room: String, name: String, address: SocketAddress, completion: @escaping Completion<Void>) {
        onRoom(room, completion) { $0.latchForTrustedCaller(room: room, name: name, address: address) }
    }

    private func onRoom<T>(_ room: String, _ completion: Completion<T>?,
                           _ body: @escaping @Sendable (RelayWorker) -> Result<T, RelayError>) {
        guard let i = directory.loop(of: room) else { completion?(.failure(.noSuchRoom(room))); return }
        // A loop that has stopped refuses work: answer instead of leaving the caller waiting.
        if !post(i, { w in
            let r = body(w)
            completion?(r)
        }) { completion?(.failure(.closed)) }
    }

    /// Posts `body` to loop `i` (one control operation); false when the loop has stopped.
    private func post(_ i: Int, _ body: @escaping @Sendable (RelayWorker) -> Void) -> Bool {
        operations.inc()
        let w = workers[i]
        return w.loop.execute { body(w) }
    }
}
