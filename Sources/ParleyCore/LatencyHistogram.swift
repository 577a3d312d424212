/// Durations in nanoseconds, counted in log-linear buckets: 16 per power of
/// two, so a percentile read back is at most 1/16 (6.25 %) above the true
/// value (values under 16 ns are exact). Fixed size, no allocation after
/// `init`; not thread-safe (one owner, e.g. an event loop).
public struct LatencyHistogram: Sendable {
    private static let subBits = 4
    private static let sub = 1 << subBits
    private var counts: [Int]
    /// Number of values recorded.
    public private(set) var count = 0
    /// The largest value recorded (ns).
    public private(set) var max: UInt64 = 0

    public init() {
        counts = Array(repeating: 0, count: (64 - Self.subBits + 1) * Self.sub)
    }

    @inline(__always) static func bucket(_ v: UInt64) -> Int {
        if v < UInt64(sub) { return Int(v) }
        let e = 63 - v.leadingZeroBitCount // v >= 16, so e >= 4
        let s = Int(truncatingIfNeeded: v >> UInt64(e - subBits)) & (sub - 1)
        return (e - subBits + 1) * sub + s
    }

    /// The largest value that falls in bucket `b`.
    static func upperBound(_ b: Int) -> UInt64 {
        if b < sub { return UInt64(b) }
        let e = b / sub + subBits - 1
        let s = UInt64(b % sub)
        let shift = UInt64(e - subBits)
        let upper = (UInt64(sub) + s + 1) << shift
        return upper == 0 ? .max : upper - 1 // the top bucket ends at UInt64.max
    }

    @inline(__always) public mutating func record(_ nanoseconds: UInt64) {
        counts[Self.bucket(nanoseconds)] += 1
        count += 1
        if nanoseconds > max { max = nanoseconds }
    }

    /// The value (ns) at or below which a fraction `p` (0...1) of the values
    /// fall, as the upper bound of its bucket (never below the true value);
    /// nil when empty.
    public func percentile(_ p: Double) -> UInt64? {
        guard count > 0 else { return nil }
        let rank = Swift.max(1, Int((p * Double(count)).rounded(.up)))
        var seen = 0
        for (b, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank { return Swift.min(Self.upperBound(b), max) }
        }
        return max
    }

    /// Adds every value of `other` (histograms of several loops, merged
    /// for one report).
    public mutating func add(_ other: LatencyHistogram) {
        for i in counts.indices { counts[i] += other.counts[i] }
        count += other.count
        if other.max > max { max = other.max }
    }

    /// Forgets every value.
    public mutating func reset() {
        for i in counts.indices { counts[i] = 0 }
        count = 0
        max = 0
    }
}
