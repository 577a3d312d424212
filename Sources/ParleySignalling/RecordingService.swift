import ParleyCore
import ParleyProtocol

/// The recorder as the signalling layer sees it (the daemon's is
/// `RoomRecorder` in ParleyServer, over ParleyRecord and the relay's tap).
/// Called on the signalling loop; nothing here blocks.
public protocol RecordingBackend: AnyObject {
    /// Starts recording `room`, whose call is open, and answers with the
    /// recording's id, on any thread (the feature hops back).
    func start(room: String, completion: @escaping @Sendable (Result<String, SignallingError>) -> Void)
    /// Stops recording `id` of `room` (an id `start` answered with: a stop
    /// asked for while the start runs waits for it, `RecordingService`'s
    /// `starting` state): its files are finished and exported
    /// off the loops. A recording that stops on its own (a disk limit, a
    /// write error, the room closing) is reported back with
    /// `RecordingService.ended(room:id:reason:)`.
    func stop(room: String, id: String)
}

/// Recording control: `start_recording` and `stop_recording` for holders of
/// the `rec` grant (or `adm`) in a room their token allows, the admin API's
/// start and stop, and automatic recording of rooms whose name matches a
/// pattern when their call opens. A recording stops when asked, when the
/// room's call closes, or on its own (disk limits). Every participant of
/// the room gets `recording_started` and `recording_stopped` (through
/// `CallService.setRecording`, which also answers late joiners' `recording`).
///
/// Confined to the signalling thread, like the core it is registered with.
public final class RecordingService: SignallingFeature {
    public let backend: any RecordingBackend
    unowned let core: SignallingCore
    unowned let calls: CallService
    /// Glob patterns (`*` any run, `?` one character) of rooms recorded as soon as their call opens.
    public var autoRecord: [String]

    private enum State {
        /// Asked the backend; `waiters` wait for the answer. `stoppers` (nil: not asked to stop) get the id once it
        /// has started and been stopped.
        case starting(waiters: [Answer], stoppers: [Answer]?)
        case recording(id: String)
    }
    public typealias Answer = (Result<String, SignallingError>) -> Void
    private var rooms: [String: State] = [:]

    /// Creates the feature, registers it with `core` and listens to `calls` for rooms opening and closing.
    public init(core: SignallingCore, calls: CallService, backend: any RecordingBackend, autoRecord: [String] = []) {
        self.core = core
        self.calls = calls
        self.backend = backend
        self.autoRecord = autoRecord
        core.register(self)
        calls.onRoomOpened = { [unowned self] room in
            guard autoRecord.contains(where: { Self.matches(room, pattern: $0) }) else { return }
            start(room: room, by: "auto") { _ in }
        }
        calls.onRoomClosed = { [unowned self] room in stop(room: room, by: "room_closed") }
    }

    // MARK: SignallingFeature

    public var messageTypes: [String] { RecordingRequest.types }

    public func handle(_ request: ClientRequest, from session: SignallingSession, reply: SignallingReply) {
        do throws(SignallingError) {
            let r = try RecordingRequest(request)
            guard session.claims.canRecord || session.claims.isAdmin else {
                throw SignallingError(.forbidden, "this token may not record (parley token --can-record)")
            }
            let (room, start) = switch r {
            case .start(let requested): (try room(requested, session), true)
            case .stop(let requested): (try room(requested, session), false)
            }
            let answer: Answer = { result in
                switch result {
                case .success(let id): reply.ok(["room": .string(room), "recording": .string(id)])
                case .failure(let e): reply.fail(e)
                }
            }
            if start { self.start(room: room, by: session.user, done: answer) } else { stop(room: room, by: session.user, answer: answer) }
        } catch {
            reply.fail(error)
        }
    }

    /// The room a request names, else the device's call, else the session's room; one the token allows.
    private func room(_ requested: String?, _ s: SignallingSession) throws(SignallingError) -> String {
        guard let room = requested ?? calls.room(of: s.key) ?? s.room else {
            throw SignallingError(.badRequest, "name the room to record in \"room\"")
        }
        guard s.claims.mayJoin(room) else { throw SignallingError(.forbidden, "this token may not record room \(room)") }
        return room
    }

    // MARK: Control (signalling thread)

    /// Starts recording `room`; `done` gets the recording's id (at once when
    /// it is already recording). The room must have a call.
    public func start(room: String, by who: String, done: @escaping (Result<String, SignallingError>) -> Void) {
        switch rooms[room] {
        case .recording(let id):
            done(.success(id))
        case .starting(var waiters, let stoppers):
            waiters.append(done)
            rooms[room] = .starting(waiters: waiters, stoppers: stoppers)
        case nil:
            guard calls.hasCall(room) else {
                done(.failure(SignallingError(.badRequest, "room \(room) has no call to record")))
                return
            }
            rooms[room] = .starting(waiters: [done], stoppers: nil)
            core.log.info("recording requested", ["room": .string(room), "by": .string(who)])
            backend.start(room: room, completion: core.onSignallingThread { [weak self] (result: Result<String, SignallingError>) in
                self?.started(room: room, result)
            })
        }
    }

    private func started(room: String, _ result: Result<String, SignallingError>) {
        guard case .starting(let waiters, let stoppers) = rooms[room] else { return }
        switch result {
        case .success(let id) where stoppers != nil || !calls.hasCall(room):
            // Stopped, or the call closed, while it started.
            backend.stop(room: room, id: id)
            rooms[room] = nil
            core.log.info("recording stopped as it started", ["room": .string(room), "recording": .string(id)])
            for w in waiters { w(.failure(SignallingError(.badRequest, "room \(room)'s recording was stopped as it started"))) }
            for s in stoppers ?? [] { s(.success(id)) }
        case .success(let id):
            rooms[room] = .recording(id: id)
            core.log.info("recording started", ["room": .string(room), "recording": .string(id)])
            calls.setRecording(room: room, true)
            for w in waiters { w(.success(id)) }
        case .failure(let e):
            rooms[room] = nil
            core.log.warn("recording failed to start", ["room": .string(room), "error": .string(e.message)])
            for w in waiters + (stoppers ?? []) { w(.failure(e)) }
        }
    }

    /// Stops recording `room` (one still starting stops as soon as it has
    /// started). `answer` gets the recording's id (for one still starting,
    /// once the start has answered), or `bad_request` when the room was not
    /// being recorded.
    public func stop(room: String, by who: String, answer: Answer? = nil) {
        switch rooms[room] {
        case .recording(let id):
            rooms[room] = nil
            backend.stop(room: room, id: id)
            core.log.info("recording stopped", ["room": .string(room), "recording": .string(id), "by": .string(who)])
            calls.setRecording(room: room, false)
            answer?(.success(id))
        case .starting(let waiters, let stoppers):
            rooms[room] = .starting(waiters: waiters, stoppers: (stoppers ?? []) + (answer.map { [$0] } ?? []))
        case nil:
            answer?(.failure(SignallingError(.badRequest, "room \(room) is not being recorded")))
        }
    }

    /// The backend stopped recording `id` on its own (`reason`: a disk
    /// limit, a write error, the room closing).
    public func ended(room: String, id: String, reason: String) {
        guard case .recording(let current) = rooms[room], current == id else { return }
        rooms[room] = nil
        core.log.warn("recording ended", ["room": .string(room), "recording": .string(id), "reason": .string(reason)])
        calls.setRecording(room: room, false)
    }

    /// The id of `room`'s running recording.
    public func recordingID(room: String) -> String? {
        if case .recording(let id) = rooms[room] { return id }
        return nil
    }

    /// Shell-style matching of a room name: `*` any run of characters, `?` one.
    public static func matches(_ name: String, pattern: String) -> Bool {
        let n = Array(name.unicodeScalars), p = Array(pattern.unicodeScalars)
        var i = 0, j = 0, star = -1, mark = 0
        while i < n.count {
            if j < p.count && (p[j] == "?" || p[j] == n[i]) { i += 1; j += 1 }
            else if j < p.count && p[j] == "*" { star = j; mark = i; j += 1 }
            else if star >= 0 { j = star + 1; mark += 1; i = mark }
            else { return false }
        }
        while j < p.count && p[j] == "*" { j += 1 }
        return j == p.count
    }
}
