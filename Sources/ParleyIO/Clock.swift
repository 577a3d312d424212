import Glibc

/// A point on the monotonic clock (`CLOCK_MONOTONIC`), in nanoseconds.
/// Never goes backwards and is not affected by wall-clock changes; use it for
/// timers, timeouts and rate measurements. Cheap: one vDSO call.
public struct MonotonicTime: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since an arbitrary fixed point (boot).
    public var nanoseconds: UInt64

    @inline(__always) public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// The current time.
    @inline(__always) public static func now() -> MonotonicTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicTime(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    /// Milliseconds since the clock's origin.
    public var milliseconds: UInt64 { nanoseconds / 1_000_000 }

    public static func < (a: MonotonicTime, b: MonotonicTime) -> Bool { a.nanoseconds < b.nanoseconds }

    /// `self + d`, saturating.
    public func adding(_ d: Duration) -> MonotonicTime {
        let ns = d.nanosecondsClamped
        guard ns > 0 else { return self }
        let (sum, overflow) = nanoseconds.addingReportingOverflow(UInt64(ns))
        return MonotonicTime(nanoseconds: overflow ? .max : sum)
    }

    /// `self - earlier`, or zero if `earlier` is later.
    public func since(_ earlier: MonotonicTime) -> Duration {
        nanoseconds >= earlier.nanoseconds ? .nanoseconds(Int64(nanoseconds - earlier.nanoseconds)) : .zero
    }

    public var description: String { "\(nanoseconds)ns" }
}

extension Duration {
    /// Whole nanoseconds, clamped to `Int64`.
    public var nanosecondsClamped: Int64 {
        let (s, atto) = components
        let (ns, o1) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return s < 0 ? .min : .max }
        let (r, o2) = ns.addingReportingOverflow(atto / 1_000_000_000)
        return o2 ? (s < 0 ? .min : .max) : r
    }

    /// Whole milliseconds, rounded up (a timer never fires early).
    public var millisecondsRoundedUp: Int64 {
        let ns = nanosecondsClamped
        return ns <= 0 ? 0 : (ns / 1_000_000) + (ns % 1_000_000 == 0 ? 0 : 1)
    }
}

/// Wall-clock time (`CLOCK_REALTIME`) in nanoseconds since the epoch: the
/// clock of kernel receive timestamps
/// (``UDPReceiveBatch/receivedAtNanoseconds(_:)``).
@inline(__always) public func realtimeNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
