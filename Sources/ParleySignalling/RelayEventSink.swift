import ParleyRelay
import Synchronization

/// Forwards relay events (from the relay's loops) to the signalling layer.
/// Create it before the relay, set `RelayConfig.onEvent = sink.deliver`, and
/// pass it to `ServerFrontEnd.start` (ParleyServer).
public final class RelayEventSink: Sendable {
    private let target = Mutex<(RelayMediaBackend, SignallingService)?>(nil)

    public init() {}

    /// Points the sink at the signalling layer (`ServerFrontEnd.start` does this).
    public func connect(backend: RelayMediaBackend, signalling: SignallingService) {
        target.withLock { $0 = (backend, signalling) }
    }

    /// Any thread (the relay calls it on a room's loop).
    public func deliver(_ event: RelayEvent) {
        guard case .participantTimedOut(let room, let id) = event,
              let (backend, signalling) = target.withLock({ $0 }),
              let who = backend.name(of: id) else { return }
        signalling.queue.async {
            backend.forget(room: room, participant: who.name)
            signalling.core.mediaTimedOut(room: room, participant: who.name)
        }
    }
}
