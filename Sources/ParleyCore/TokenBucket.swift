/// A token bucket: tokens accrue at `rate` per second up to `burst`, and each
/// admitted event takes one. The caller passes the time (monotonic
/// nanoseconds), so the bucket reads no clock and never allocates; it is a
/// value owned by one thread (a connection's loop, say).
public struct TokenBucket: Sendable {
    /// Tokens added per second.
    public let rate: Double
    /// The most tokens the bucket holds (and so the longest burst admitted at once).
    public let burst: Double
    private var tokens: Double
    private var last: UInt64

    /// A full bucket at `now`.
    public init(rate: Double, burst: Double, now: UInt64) {
        precondition(rate > 0 && burst >= 1, "a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        tokens = burst
        last = now
    }

    /// Takes one token if there is one; false means the event is over the limit.
    public mutating func take(now: UInt64) -> Bool {
        refill(now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Nanoseconds until a token is available (0 if one is now).
    public mutating func nanosecondsUntilAvailable(now: UInt64) -> UInt64 {
        refill(now)
        return tokens >= 1 ? 0 : UInt64(((1 - tokens) / rate * 1e9).rounded(.up))
    }

    /// True when the bucket is full (it then holds nothing a new bucket would not).
    public mutating func isFull(now: UInt64) -> Bool {
        refill(now)
        return tokens >= burst
    }

    private mutating func refill(_ now: UInt64) {
        guard now > last else { return }
        tokens = min(burst, tokens + Double(now - last) * rate / 1e9)
        last = now
    }
}
