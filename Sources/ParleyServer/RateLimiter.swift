import ParleyWeb
import Synchronization
import ParleyCore
import ParleyIO

/// Token buckets by key (a token's subject): each key may take `burst` at
/// once and `perMinute` a minute after that. Thread-safe.
final class KeyedTokenBuckets: Sendable {
    let burst: Double
    let perSecond: Double
    private let buckets = Mutex<[String: TokenBucket]>([:])
    /// Past this many keys, full buckets are forgotten (they hold nothing a new one would not).
    static let pruneAt = 10_000

    init(burst: Int, perMinute: Int) {
        self.burst = Double(burst)
        self.perSecond = Double(perMinute) / 60
    }

    /// Takes one token for `key`: nil when there was one, else the seconds
    /// until there will be (for `Retry-After`).
    func take(_ key: String, now: UInt64 = MonotonicTime.now().nanoseconds) -> Double? {
        buckets.withLock { b in
            var bucket = b[key] ?? TokenBucket(rate: perSecond, burst: burst, now: now)
            defer {
                b[key] = bucket
                if b.count > Self.pruneAt { b = b.filter { var x = $0.value; return !x.isFull(now: now) } }
            }
            if bucket.take(now: now) { return nil }
            return Double(bucket.nanosecondsUntilAvailable(now: now)) / 1e9
        }
    }
}
