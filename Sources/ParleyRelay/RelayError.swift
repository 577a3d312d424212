/// The one error type of ParleyRelay: control-plane faults returned to the
/// caller (signalling, tests). Media faults are never errors: malformed or
/// unauthenticated packets are dropped and counted (`RelayMetrics`).
public enum RelayError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No room with this name.
    case noSuchRoom(String)
    /// No participant with this name in the room.
    case noSuchParticipant(String)
    /// No track with this SSRC in the room.
    case noSuchTrack(UInt32)
    /// The loop (or every loop) already carries `limit` rooms.
    case tooManyRooms(limit: Int)
    /// The room already has `limit` participants.
    case roomFull(room: String, limit: Int)
    /// A requested SSRC is already used in the room (or is 0).
    case ssrcInUse(UInt32)
    /// `publish` of an SSRC the participant was not granted at join.
    case ssrcNotGranted(UInt32)
    /// A request that does not make sense (bad name, bad track spec).
    case invalidRequest(String)
    /// Binding a media or STUN socket failed.
    case bindFailed(address: String, reason: String)
    /// The relay is shut down.
    case closed

    public var description: String {
        switch self {
        case .noSuchRoom(let n): return "no room \(n)"
        case .noSuchParticipant(let p): return "no participant \(p)"
        case .noSuchTrack(let s): return "no track with SSRC \(s)"
        case .tooManyRooms(let l): return "too many rooms (limit \(l) per event loop)"
        case .roomFull(let r, let l): return "room \(r) is full (limit \(l) participants)"
        case .ssrcInUse(let s): return "SSRC \(s) is already in use in the room"
        case .ssrcNotGranted(let s): return "SSRC \(s) was not granted at join"
        case .invalidRequest(let m): return "invalid request: \(m)"
        case .bindFailed(let a, let r): return "cannot bind \(a): \(r)"
        case .closed: return "the relay is shut down"
        }
    }
}
