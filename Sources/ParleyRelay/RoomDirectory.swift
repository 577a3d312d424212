import Synchronization

/// Which event loop (which `RelayWorker`) carries each room. The relay asks
/// it where to post a room's operations; a worker tells it when a room
/// closes. Placement puts a new room on the least-loaded loop.
///
/// A protocol so that a directory shared by several nodes can replace the
/// local one later. Any thread.
public protocol RoomDirectory: Sendable {
    /// The loop carrying `room`. A room nobody carries is placed now: on
    /// `loop` when given, else on the loop with the fewest rooms.
    func place(_ room: String, on loop: Int?) -> Int
    /// The loop carrying `room`, if any.
    func loop(of room: String) -> Int?
    /// `room` closed on `loop`: forget it (nothing if it is carried elsewhere).
    func forget(_ room: String, loop: Int)
    /// The rooms placed, sorted.
    var roomNames: [String] { get }
}

/// The directory of one process: a map under a `Mutex`, with a room count per loop.
public final class LocalRoomDirectory: RoomDirectory {
    private struct State {
        var loops: [String: Int] = [:]
        var counts: [Int]
    }
    private let state: Mutex<State>

    /// A directory for `loopCount` loops.
    public init(loopCount: Int) {
        state = Mutex(State(counts: Array(repeating: 0, count: loopCount)))
    }

    public func place(_ room: String, on loop: Int?) -> Int {
        state.withLock { s in
            if let i = s.loops[room] { return i }
            let i = loop ?? s.counts.indices.min { s.counts[$0] < s.counts[$1] }!
            s.loops[room] = i
            s.counts[i] += 1
            return i
        }
    }

    public func loop(of room: String) -> Int? { state.withLock { $0.loops[room] } }

    public func forget(_ room: String, loop: Int) {
        state.withLock { s in
            guard s.loops[room] == loop else { return }
            s.loops[room] = nil
            s.counts[loop] -= 1
        }
    }

    public var roomNames: [String] { state.withLock { Array($0.loops.keys) }.sorted() }
}
