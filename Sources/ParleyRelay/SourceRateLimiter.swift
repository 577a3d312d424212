import ParleyCore
import ParleyIO

/// How many STUN answers one source IP may get from a port that answers
/// strangers (the STUN service; the media ports' unauthenticated answers).
/// Answers go to the source address, which anyone can spoof: without a
/// limit, the relay would reflect a flood at whoever the source names.
public struct STUNRateLimit: Sendable, Equatable {
    /// Answers per second per source IP.
    public var rate: Int = 20
    /// Answers one source IP may get at once.
    public var burst: Int = 40
    /// Source IPs remembered (a fixed table; the least recently seen are forgotten first).
    public var sources: Int = 4096

    public init() {}
    public init(rate: Int, burst: Int, sources: Int) {
        self.rate = rate; self.burst = burst; self.sources = sources
    }
}

/// A token bucket per source IP (the port is ignored: one host is one
/// source, whatever ports it sends from), in a table of fixed size so that
/// a flood from spoofed addresses cannot grow memory.
///
/// The table is 4-way set associative: an IP hashes (seeded, so not
/// predictably) to a set of four entries, and a new IP takes the least
/// recently seen entry of its set, which forgets that source (it starts
/// again with a full bucket). A steady flooder stays recently seen and
/// keeps its empty bucket; spoofed floods mostly evict each other.
/// Nothing allocates after init. Loop only.
final class SourceRateLimiter {
    private struct Entry {
        var source: SocketAddress
        var bucket: TokenBucket
        /// Monotonic ns of the last request; 0 for an unused entry.
        var lastSeen: UInt64
    }

    private static let ways = 4
    private let limit: STUNRateLimit
    private let setMask: Int
    private let entries: UnsafeMutablePointer<Entry>
    private let count: Int

    init(_ limit: STUNRateLimit) {
        precondition(limit.rate > 0 && limit.burst > 0 && limit.sources > 0, "a STUN rate limit needs positive rate, burst and sources")
        self.limit = limit
        var sets = 1
        while sets * Self.ways < limit.sources { sets <<= 1 }
        setMask = sets - 1
        count = sets * Self.ways
        let empty = Entry(source: .ipv4Any(port: 0), bucket: TokenBucket(rate: 1, burst: 1, now: 0), lastSeen: 0)
        entries = .allocate(capacity: count)
        entries.initialize(repeating: empty, count: count)
    }

    deinit {
        entries.deinitialize(count: count)
        entries.deallocate()
    }

    /// Takes a token for `source` at `nowNs` (monotonic, non-zero); false when it is over its limit.
    func admit(_ source: SocketAddress, nowNs: UInt64) -> Bool {
        let ip = source.withPort(0)
        let set = entries + (ip.hashValue & setMask) * Self.ways
        var victim = 0
        for i in 0..<Self.ways {
            if set[i].lastSeen != 0, set[i].source == ip {
                set[i].lastSeen = nowNs
                return set[i].bucket.take(now: nowNs)
            }
            if set[i].lastSeen < set[victim].lastSeen { victim = i }
        }
        set[victim] = Entry(source: ip, bucket: TokenBucket(rate: Double(limit.rate), burst: Double(limit.burst), now: nowNs),
                            lastSeen: nowNs)
        return set[victim].bucket.take(now: nowNs)
    }
}
