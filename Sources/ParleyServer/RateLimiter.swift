import Foundation
import Synchronization

/// Token buckets by key (a token's subject): each key may take `burst` at
/// once and `perSecond` after that. Thread-safe.
final class KeyedTokenBuckets: Sendable {
    let burst: Double
    let perSecond: Double
    private let buckets = Mutex<[String: (tokens: Double, at: Double)]>([:])
    /// Past this many keys, full buckets are forgotten (they hold nothing a new one would not).
    static let pruneAt = 10_000

    init(burst: Int, perMinute: Int) {
        self.burst = Double(burst)
        self.perSecond = Double(perMinute) / 60
    }

    /// Takes one token for `key`: nil when there was one, else the seconds
    /// until there will be (for `Retry-After`).
    func take(_ key: String, now: Double = ProcessInfo.processInfo.systemUptime) -> Double? {
        buckets.withLock { b in
            var e = b[key] ?? (burst, now)
            e.tokens = min(burst, e.tokens + (now - e.at) * perSecond)
            e.at = now
            defer {
                b[key] = e
                if b.count > Self.pruneAt {
                    b = b.filter { $0.value.tokens + (now - $0.value.at) * perSecond < burst }
                }
            }
            guard e.tokens >= 1 else { return (1 - e.tokens) / perSecond }
            e.tokens -= 1
            return nil
        }
    }
}
