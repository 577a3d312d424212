import ParleyRelay
import Synchronization

/// Forwards relay events (from the relay's loops) to the signalling layer.
/// Create it before the relay, set `RelayConfig.onEvent = sink.deliver`, and
/// pass it to `ServerFrontEnd.start` (ParleyServer).
public final class RelayEventSink: Sendable {
    private let target = Mutex<SignallingService?>(nil)

    public init() {}

    /// Points the sink at the signalling layer (`ServerFrontEnd.start` does this).
    public func connect(signalling: SignallingService) {
        target.withLock { $0 = signalling }
    }

    /// Any thread (the relay calls it on a room's loop).
    public func deliver(_ event: RelayEvent) {
        guard let signalling = target.withLock({ $0 }) else { return }
        switch event {
        case .participantTimedOut(let room, let name):
            signalling.execute { _, calls in calls.mediaTimedOut(room: room, participant: name) }
        case .transportFailed(let room, let name, _):
            signalling.execute { _, calls in calls.mediaTimedOut(room: room, participant: name, reason: "transport_failed") }
        case .participantLatched:
            break
        }
    }
}
