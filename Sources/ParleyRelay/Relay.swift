import ParleyCore
import ParleyIO
import Synchronization
import Dispatch

/// The relay's control API, safe from any thread: one `RelayWorker` per
/// event loop (each with its media socket), and a directory of which loop
/// carries which room.
///
/// Every method posts the work to the room's loop with `loop.execute` and
/// calls `completion` there, on that loop's thread, when done. Callers on
/// other threads must not block a loop waiting for it; tests and setup code
/// may use the blocking `…Sync` variants (never on a loop thread).
public final class Relay: Sendable {
    /// One worker per loop, in the order of the loops given.
    public let workers: [RelayWorker]
    private let directory = Mutex<[String: Int]>([:])
    private let roomCounts: Mutex<[Int]>
    private let config: RelayConfig

    /// Binds one media socket per loop (`mediaAddresses[i]` on `loops[i]`)
    /// and starts the workers. The loops must be running (an
    /// `EventLoopGroup`'s); call from any thread but a loop thread.
    public init(loops: [EventLoop], mediaAddresses: [SocketAddress], config: RelayConfig = RelayConfig()) throws(RelayError) {
        precondition(!loops.isEmpty && loops.count == mediaAddresses.count, "one media address per loop")
        self.config = config
        var ws: [RelayWorker] = []
        for (i, (loop, addr)) in zip(loops, mediaAddresses).enumerated() {
            let r: Result<RelayWorker, RelayError>
            do {
                r = try loop.submit { () -> Result<RelayWorker, RelayError> in
                    Result { () throws(RelayError) in try RelayWorker(loop: loop, index: i, bindTo: addr, config: config) }
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
        roomCounts = Mutex(Array(repeating: 0, count: ws.count))
    }

    /// How long a participant may send nothing before it is removed.
    public var participantTimeout: Duration { config.participantTimeout }

    /// The media endpoints, one per loop (`host:port`).
    public var endpoints: [String] { workers.map(\.endpoint) }

    /// Closes every room and socket, blocking until each loop has done so.
    /// Not from a loop thread.
    public func shutdown() {
        for w in workers { try? w.loop.submit { w.close() } }
        directory.withLock { dir in
            dir.removeAll()
            roomCounts.withLock { for i in $0.indices { $0[i] = 0 } }
        }
    }

    private func worker(for room: String) -> RelayWorker? {
        directory.withLock { $0[room] }.map { workers[$0] }
    }

    // MARK: Asynchronous API (completion runs on the room's loop)

    /// Opens a room on the least-loaded loop.
    public func createRoom(_ name: String, completion: @escaping @Sendable (Result<RoomInfo, RelayError>) -> Void) {
        let pick: Int? = directory.withLock { dir in
            guard dir[name] == nil else { return nil }
            let i = roomCounts.withLock { counts in
                let i = counts.indices.min { counts[$0] < counts[$1] }!
                counts[i] += 1
                return i
            }
            dir[name] = i
            return i
        }
        guard let i = pick else { completion(.failure(.roomExists(name))); return }
        let w = workers[i]
        let posted = w.loop.execute { [self] in
            let r = w.createRoom(name)
            if case .failure = r { forget(name, loop: i) }
            completion(r)
        }
        if !posted {
            forget(name, loop: i)
            completion(.failure(.closed))
        }
    }

    /// Closes a room and removes its participants.
    public func closeRoom(_ name: String, completion: @escaping @Sendable (Result<Void, RelayError>) -> Void) {
        guard let w = worker(for: name) else { completion(.failure(.noSuchRoom(name))); return }
        let posted = w.loop.execute { [self] in
            let r = w.closeRoom(name)
            if case .success = r { forget(name, loop: w.index) }
            completion(r)
        }
        if !posted { completion(.failure(.closed)) }
    }

    private func forget(_ name: String, loop i: Int) {
        directory.withLock { dir in
            guard dir[name] == i else { return }
            dir[name] = nil
            roomCounts.withLock { $0[i] -= 1 }
        }
    }

    /// Adds a participant publishing `tracks`: returns its endpoint,
    /// credentials and granted SSRCs.
    public func addParticipant(room: String, tracks: [TrackSpec],
                               completion: @escaping @Sendable (Result<ParticipantGrant, RelayError>) -> Void) {
        onRoom(room, completion) { $0.addParticipant(room: room, tracks: tracks) }
    }

    /// Removes a participant.
    public func removeParticipant(room: String, _ id: ParticipantID,
                                  completion: @escaping @Sendable (Result<Void, RelayError>) -> Void) {
        onRoom(room, completion) { $0.removeParticipant(room: room, id) }
    }

    /// Subscribes (`true`) or unsubscribes a participant to/from track `ssrc`.
    public func setSubscribed(room: String, subscriber: ParticipantID, ssrc: UInt32, _ subscribed: Bool,
                              completion: @escaping @Sendable (Result<Void, RelayError>) -> Void) {
        onRoom(room, completion) { $0.setSubscribed(room: room, subscriber: subscriber, ssrc: ssrc, subscribed) }
    }

    /// Mutes or unmutes track `ssrc` for everyone.
    public func setMuted(room: String, ssrc: UInt32, _ muted: Bool,
                         completion: @escaping @Sendable (Result<Void, RelayError>) -> Void) {
        onRoom(room, completion) { $0.setMuted(room: room, ssrc: ssrc, muted) }
    }

    /// Installs a participant's SRTP hooks (hop-by-hop; see `ParticipantCrypto`).
    public func setCrypto(room: String, participant: ParticipantID, _ crypto: ParticipantCrypto?,
                          completion: @escaping @Sendable (Result<Void, RelayError>) -> Void) {
        onRoom(room, completion) { $0.setCrypto(room: room, participant: participant, crypto) }
    }

    /// Starts (or with nil stops) a room's recorder tap: every plaintext RTP
    /// packet the room forwards, on the room's loop.
    public func setTap(room: String, _ tap: RTPTap?, completion: @escaping @Sendable (Result<Void, RelayError>) -> Void) {
        onRoom(room, completion) { $0.setTap(room: room, tap) }
    }

    /// Counts as activity for the participant's timeout, as a packet from it
    /// would: for a receive-only tool that sends nothing on its media port
    /// (ffmpeg reading an SDP) while its signalling connection shows it is
    /// there. Moves nothing. Fire and forget.
    public func keepAlive(room: String, _ id: ParticipantID) {
        onRoom(room, { (_: Result<Void, RelayError>) in }) { $0.keepAlive(room: room, id) }
    }

    /// A snapshot of a room's participants, tracks and counters.
    public func stats(room: String, completion: @escaping @Sendable (Result<RoomStats, RelayError>) -> Void) {
        onRoom(room, completion) { $0.stats(room: room) }
    }

    /// Names of the open rooms.
    public var roomNames: [String] { directory.withLock { Array($0.keys) }.sorted() }

    private func onRoom<T>(_ room: String, _ completion: @escaping @Sendable (Result<T, RelayError>) -> Void,
                           _ body: @escaping @Sendable (RelayWorker) -> Result<T, RelayError>) {
        guard let w = worker(for: room) else { completion(.failure(.noSuchRoom(room))); return }
        // A loop that has stopped refuses work: answer instead of leaving the caller waiting.
        if !w.loop.execute({ completion(body(w)) }) { completion(.failure(.closed)) }
    }

    // MARK: Blocking API (setup code and tests; never on a loop thread)

    public func createRoomSync(_ name: String) throws(RelayError) -> RoomInfo { try wait { createRoom(name, completion: $0) } }
    public func closeRoomSync(_ name: String) throws(RelayError) { try wait { closeRoom(name, completion: $0) } }
    public func addParticipantSync(room: String, tracks: [TrackSpec]) throws(RelayError) -> ParticipantGrant {
        try wait { addParticipant(room: room, tracks: tracks, completion: $0) }
    }
    public func removeParticipantSync(room: String, _ id: ParticipantID) throws(RelayError) {
        try wait { removeParticipant(room: room, id, completion: $0) }
    }
    public func setSubscribedSync(room: String, subscriber: ParticipantID, ssrc: UInt32, _ subscribed: Bool) throws(RelayError) {
        try wait { setSubscribed(room: room, subscriber: subscriber, ssrc: ssrc, subscribed, completion: $0) }
    }
    public func setMutedSync(room: String, ssrc: UInt32, _ muted: Bool) throws(RelayError) {
        try wait { setMuted(room: room, ssrc: ssrc, muted, completion: $0) }
    }
    public func setCryptoSync(room: String, participant: ParticipantID, _ crypto: ParticipantCrypto?) throws(RelayError) {
        try wait { setCrypto(room: room, participant: participant, crypto, completion: $0) }
    }
    public func setTapSync(room: String, _ tap: RTPTap?) throws(RelayError) {
        try wait { setTap(room: room, tap, completion: $0) }
    }
    public func statsSync(room: String) throws(RelayError) -> RoomStats { try wait { stats(room: room, completion: $0) } }

    /// Latches a fixed address for a participant without STUN. Trusted
    /// in-process callers only (`parley bench relay`, in ParleyBench: public
    /// for it alone); blocking.
    public func latchSync(room: String, _ id: ParticipantID, address: SocketAddress) throws(RelayError) {
        guard let w = worker(for: room) else { throw .noSuchRoom(room) }
        try wait { done in
            if !w.loop.execute({ done(w.latchForTrustedCaller(room: room, id, address: address)) }) { done(.failure(.closed)) }
        }
    }

    private func wait<T>(_ start: (@escaping @Sendable (Result<T, RelayError>) -> Void) -> Void) throws(RelayError) -> T {
        precondition(!workers.contains { $0.loop.inEventLoop }, "blocking relay call on a relay loop would deadlock")
        let box = ResultBox<T>()
        start { box.put($0) }
        return try box.take().get()
    }
}

/// A one-shot hand-off from a loop to a blocked caller: the semaphore
/// orders the write before the read, so the value needs no lock.
final class ResultBox<T>: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private var value: Result<T, RelayError>?

    func put(_ v: Result<T, RelayError>) {
        value = v
        ready.signal()
    }

    func take() -> Result<T, RelayError> {
        ready.wait()
        return value!
    }
}
