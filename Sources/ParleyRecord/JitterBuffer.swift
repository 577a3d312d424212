/// An RTP packet of one track in sequence order, with its sequence number
/// and timestamp extended past their wrap-arounds.
public struct OrderedPacket: Sendable, Equatable {
    public var sequence: Int64
    public var timestamp: Int64
    public var marker: Bool
    public var payload: [UInt8]
    public var arrivalNanos: Int64
    public init(sequence: Int64, timestamp: Int64, marker: Bool, payload: [UInt8], arrivalNanos: Int64 = 0) {
        self.sequence = sequence; self.timestamp = timestamp; self.marker = marker; self.payload = payload; self.arrivalNanos = arrivalNanos
    }
}

/// What comes out of a `JitterBuffer`: the next packet, or the news that
/// `count` packets before it will never come.
public enum JitterOutput: Sendable, Equatable {
    case packet(OrderedPacket)
    case lost(count: Int)
}

/// Puts one track's packets back in sequence order. Holds up to `window`
/// packets waiting for a missing one; past that the missing ones are
/// declared lost. Duplicates and packets older than what was released are
/// dropped (and counted).
public struct JitterBuffer: Sendable {
    public let window: Int
    private var waiting: [Int64: OrderedPacket] = [:]
    private var next: Int64?
    private var highestSequence: Int64?
    private var highestTimestamp: Int64?
    public private(set) var duplicates = 0
    public private(set) var late = 0

    public init(window: Int = 64) { self.window = window }

    /// Adds a packet; returns what can be released in order.
    public mutating func push(sequence: UInt16, timestamp: UInt32, marker: Bool, payload: [UInt8], arrivalNanos: Int64 = 0) -> [JitterOutput] {
        let seq = Self.extend(UInt64(sequence), bits: 16, near: highestSequence)
        let ts = Self.extend(UInt64(timestamp), bits: 32, near: highestTimestamp)
        if seq > highestSequence ?? .min { highestSequence = seq; highestTimestamp = ts }
        if next == nil { next = seq }
        guard seq >= next! else { late += 1; return [] }
        guard waiting[seq] == nil else { duplicates += 1; return [] }
        waiting[seq] = OrderedPacket(sequence: seq, timestamp: ts, marker: marker, payload: payload, arrivalNanos: arrivalNanos)
        var out: [JitterOutput] = []
        release(into: &out, force: waiting.count > window)
        return out
    }

    /// Releases everything still waiting (end of the stream).
    public mutating func flush() -> [JitterOutput] {
        var out: [JitterOutput] = []
        while !waiting.isEmpty { release(into: &out, force: true) }
        return out
    }

    private mutating func release(into out: inout [JitterOutput], force: Bool) {
        var force = force
        while let n = next {
            if let p = waiting.removeValue(forKey: n) {
                out.append(.packet(p))
                next = n + 1
            } else if force, let lowest = waiting.keys.min() {
                out.append(.lost(count: Int(lowest - n)))
                next = lowest
                force = waiting.count > window
            } else {
                return
            }
        }
    }

    /// The value of the `bits`-bit counter `v` closest to `reference` (RFC 3550 A.1 style unwrapping).
    static func extend(_ v: UInt64, bits: Int, near reference: Int64?) -> Int64 {
        guard let r = reference else { return Int64(v) }
        let span = Int64(1) << bits
        let base = r & ~(span - 1)
        var candidate = base + Int64(v)
        if candidate - r > span / 2 { candidate -= span } else if r - candidate > span / 2 { candidate += span }
        return candidate
    }
}
