import Foundation

/// A value shared between threads in tests.
final class Mutexed<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T { lock.withLock { v } }
    func update<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&v) } }
}
