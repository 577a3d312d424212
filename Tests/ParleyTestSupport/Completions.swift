import Dispatch
import Synchronization

/// Waits for the answer of an operation that replies through a completion
/// (the relay's control API): for test setup and checks, never on the
/// thread the completion runs on. The APIs themselves never block.
public func waitFor<T: Sendable, E: Error>(_ start: (@escaping @Sendable (Result<T, E>) -> Void) -> Void) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let answer = Mutex<Result<T, E>?>(nil)
    start { r in
        answer.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try answer.withLock { $0! }.get()
}
