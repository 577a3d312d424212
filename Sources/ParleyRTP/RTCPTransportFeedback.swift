import ParleyCore

// Transport-wide congestion control feedback,
// draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1 (RTPFB, FMT = 15):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |V=2|P|  FMT=15 |    PT=205     |           length              |
// |                     SSRC of packet sender                     |
// |                      SSRC of media source                     |
// |      base sequence number     |      packet status count      |
// |                 reference time                | fb pkt. count |
// |          packet chunk         |         packet chunk          |
// .                                                               .
// |         packet chunk          |  recv delta   |  recv delta   |
// .                                                               .
//
// Status symbols: 00 not received, 01 received (1-byte delta, 0..255 × 250 µs),
// 10 received (2-byte signed delta × 250 µs). Chunks: run length (T=0, S: 2
// bits, run: 13 bits) or status vector (T=1, S=1: seven 2-bit symbols).
// Reference time: 24 bits, signed, in 64 ms; the first delta is from it,
// each next one from the previous received packet.

/// The receive side of transport-wide congestion control: the arrival time
/// of each transport-wide sequence number a sender used (one ring of
/// `window` slots, allocated once), turned into feedback packets that tell
/// the sender what arrived when, so that its bandwidth estimator can work.
/// Each feedback covers what arrived since the previous one.
public struct TransportFeedbackRecorder {
    /// Sequence numbers remembered: older unreported ones are given up (reported as never sent).
    public static let window = 2048
    /// The most packets one feedback describes (its size then stays under 1,200 bytes:
    /// 20 + 2 per 7 statuses + at most 2 per delta).
    public static let maxStatuses = 500

    private var arrivals: [Int64]  // µs, -1: not received
    private var symbols: [UInt8]
    /// Unwrapped sequence number of the first packet not reported yet; nil before the first packet.
    private var next: Int64?
    private var highest: Int64 = -1
    private var feedbackCount: UInt8 = 0
    /// Packets given up without being reported (the window overflowed).
    public private(set) var forgotten = 0

    public init() {
        arrivals = Array(repeating: -1, count: Self.window)
        symbols = Array(repeating: 0, count: Self.maxStatuses)
    }

    /// Records that transport-wide sequence number `seq` arrived at `arrivalMicroseconds` (monotonic).
    public mutating func record(_ seq: UInt16, arrivalMicroseconds: Int64) {
        let u: Int64
        if highest < 0 {
            u = Int64(seq) + 65536
        } else {
            u = highest + Int64(Int16(bitPattern: seq &- UInt16(truncatingIfNeeded: highest)))
        }
        if next == nil { next = u }
        guard let n = next, u >= n else { return } // already reported, or before the first
        if u >= n + Int64(Self.window) {
            // Too far ahead: give up the oldest unreported ones (at most one window's worth to clear).
            let newNext = u - Int64(Self.window) + 1
            var i = n
            while i < min(newNext, n + Int64(Self.window)) {
                if i <= highest { forgotten += 1 }
                arrivals[Int(i & Int64(Self.window - 1))] = -1
                i += 1
            }
            next = newNext
        }
        arrivals[Int(u & Int64(Self.window - 1))] = arrivalMicroseconds
        if u > highest { highest = u }
    }

    /// Microseconds in 250 µs ticks, rounded to the nearest.
    static func ticks(_ microseconds: Int64) -> Int64 {
        microseconds >= 0 ? (microseconds + 125) / 250 : -((-microseconds + 125) / 250)
    }

    /// Whether packets arrived that no feedback described yet.
    public var hasPending: Bool { next.map { $0 <= highest } ?? false }

    /// Writes one feedback packet into `buffer` (at least 1,200 bytes)
    /// describing the oldest unreported packets (at most `maxStatuses`),
    /// and marks them reported. Returns its size, or 0 when nothing is pending.
    public mutating func writeFeedback(senderSSRC: UInt32, mediaSSRC: UInt32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = next, base <= highest, buffer.count >= 1200 else { return 0 }
        let mask = Int64(Self.window - 1)
        var count = Int(min(highest - base + 1, Int64(Self.maxStatuses)))
        // Reference time: the first received packet's arrival, in 64 ms.
        var first: Int64 = -1
        for i in 0..<count where arrivals[Int((base + Int64(i)) & mask)] >= 0 {
            first = arrivals[Int((base + Int64(i)) & mask)]
            break
        }
        if first < 0 { first = 0 }
        let reference = first / 64_000
        // Symbols and the deltas' size; stop before a delta 16 bits cannot hold (the next feedback starts there).
        var previous = reference * 64_000
        for i in 0..<count {
            let t = arrivals[Int((base + Int64(i)) & mask)]
            guard t >= 0 else { symbols[i] = 0; continue }
            let ticks = Self.ticks(t - previous)
            if (0...255).contains(ticks) {
                symbols[i] = 1
            } else if (Int64(Int16.min)...Int64(Int16.max)).contains(ticks) {
                symbols[i] = 2
            } else {
                count = i // never the first: its delta from the reference time is under 64 ms
                break
            }
            previous += ticks * 250
        }
        // Header and fixed fields.
        buffer.put32(senderSSRC, at: 4)
        buffer.put32(mediaSSRC, at: 8)
        buffer.put16(UInt16(truncatingIfNeeded: base), at: 12)
        buffer.put16(UInt16(count), at: 14)
        buffer.put24(UInt32(truncatingIfNeeded: reference) & 0xFF_FFFF, at: 16)
        buffer.put8(feedbackCount, at: 19)
        feedbackCount &+= 1
        var off = 20
        // Packet chunks: a run-length chunk for 7 or more equal symbols, else seven 2-bit symbols.
        var i = 0
        while i < count {
            var run = 1
            while i + run < count, symbols[i + run] == symbols[i], run < 8191 { run += 1 }
            if run >= 7 {
                buffer.put16(UInt16(symbols[i]) << 13 | UInt16(run), at: off)
                i += run
            } else {
                var chunk: UInt16 = 0xC000
                for k in 0..<7 where i + k < count { chunk |= UInt16(symbols[i + k]) << UInt16(12 - 2 * k) }
                buffer.put16(chunk, at: off)
                i += 7
            }
            off += 2
        }
        // Receive deltas.
        previous = reference * 64_000
        for i in 0..<count where symbols[i] != 0 {
            let t = arrivals[Int((base + Int64(i)) & mask)]
            let ticks = Self.ticks(t - previous)
            if symbols[i] == 1 {
                buffer.put8(UInt8(ticks), at: off)
                off += 1
            } else {
                buffer.put16(UInt16(bitPattern: Int16(ticks)), at: off)
                off += 2
            }
            previous += ticks * 250
        }
        // RTCP padding (RFC 3550 §6.4.1): P set, the last byte counts the padding.
        let padding = (4 - off % 4) % 4
        if padding > 0 {
            for k in 0..<padding { buffer.put8(0, at: off + k) }
            off += padding
            buffer.put8(UInt8(padding), at: off - 1)
        }
        buffer.put8(0x80 | (padding > 0 ? 0x20 : 0) | RTCP.Format.transportWideFeedback, at: 0)
        buffer.put8(RTCP.PacketType.transportFeedback, at: 1)
        buffer.put16(UInt16(off / 4 - 1), at: 2)
        // Mark them reported.
        for k in 0..<count { arrivals[Int((base + Int64(k)) & mask)] = -1 }
        next = base + Int64(count)
        return off
    }
}
