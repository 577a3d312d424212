/// Receive-side statistics for one RTP source, following RFC 3550:
/// A.1 (sequence number validation and unwrapping, with probation),
/// A.3 (expected / lost / fraction lost) and A.8 (interarrival jitter),
/// plus LSR/DLSR bookkeeping (§6.4.1) to fill an RR report block.
///
/// A value type with no allocation: one per received SSRC, updated on the
/// source's event loop.
public struct RTPReceiveStatistics: Sendable {
    /// A.1: a jump larger than this is a restart (or garbage) unless confirmed.
    public static let maxDropout: UInt32 = 3000
    /// A.1: packets this far behind are treated as late or duplicate.
    public static let maxMisorder: UInt32 = 100
    /// A.1: sequential packets needed before a new source is valid.
    public static let minSequential = 2
    static let seqMod: UInt32 = 1 << 16

    /// RTP clock rate of the source's payload format (e.g. 90000 video, 48000 Opus).
    public let clockRate: UInt32
    let initialProbation: Int

    private var started = false
    /// Highest sequence number seen (A.1 `max_seq`).
    public private(set) var maxSequence: UInt16 = 0
    /// Shifted count of sequence wraps (A.1 `cycles`: a multiple of 65536).
    public private(set) var cycles: UInt32 = 0
    /// A.1 `base_seq`.
    public private(set) var baseSequence: UInt32 = 0
    private var badSequence: UInt32 = RTPReceiveStatistics.seqMod + 1
    /// Packets still needed before the source is valid (A.1 `probation`).
    public private(set) var probation: Int
    /// Valid packets received (A.1 `received`), duplicates included as the RFC does.
    public private(set) var received: UInt64 = 0
    private var expectedPrior: Int64 = 0
    private var receivedPrior: UInt64 = 0
    private var lastTransit: Int32 = 0
    private var haveTransit = false
    /// Jitter × 16 (A.8 integer form).
    private var jitterQ4: UInt32 = 0
    private var lastSR: UInt32 = 0
    private var lastSRArrival: UInt64 = 0
    private var haveSR = false

    /// - Parameters:
    ///   - clockRate: the RTP timestamp rate in Hz.
    ///   - probation: sequential packets required before the source counts
    ///     (A.1 MIN_SEQUENTIAL = 2). Pass 0 when the source is already
    ///     authenticated (e.g. SRTP), so the first packet counts.
    public init(clockRate: UInt32, probation: Int = RTPReceiveStatistics.minSequential) {
        precondition(clockRate > 0, "clock rate must be positive")
        self.clockRate = clockRate
        self.initialProbation = probation
        self.probation = probation
    }

    /// True once probation has passed.
    public var isValid: Bool { started && probation == 0 }

    /// A.1 `init_seq`.
    private mutating func initSequence(_ seq: UInt16) {
        baseSequence = UInt32(seq)
        maxSequence = seq
        badSequence = RTPReceiveStatistics.seqMod + 1
        cycles = 0
        received = 0
        receivedPrior = 0
        expectedPrior = 0
    }

    /// A.1 `update_seq`: returns true when the packet is valid and counted.
    mutating func updateSequence(_ seq: UInt16) -> Bool {
        if !started {
            started = true
            initSequence(seq)
            if initialProbation <= 0 {
                // Trusted source: valid from its first packet.
                probation = 0
                received = 1
                return true
            }
            maxSequence = seq &- 1
            probation = initialProbation
        }
        let udelta = UInt32(seq &- maxSequence)
        if probation > 0 {
            // Source is not valid until MIN_SEQUENTIAL packets in sequence have arrived.
            if seq == maxSequence &+ 1 {
                probation -= 1
                maxSequence = seq
                if probation == 0 {
                    initSequence(seq)
                    received += 1
                    return true
                }
            } else {
                probation = RTPReceiveStatistics.minSequential - 1
                maxSequence = seq
            }
            return false
        } else if udelta < RTPReceiveStatistics.maxDropout {
            // In order, with permissible gap.
            if seq < maxSequence { cycles &+= RTPReceiveStatistics.seqMod }
            maxSequence = seq
        } else if udelta <= RTPReceiveStatistics.seqMod - RTPReceiveStatistics.maxMisorder {
            // The sequence number made a very large jump.
            if UInt32(seq) == badSequence {
                // Two sequential packets: assume the other side restarted without telling us.
                initSequence(seq)
            } else {
                badSequence = (UInt32(seq) + 1) & (RTPReceiveStatistics.seqMod - 1)
                return false
            }
        } else {
            // Duplicate or reordered packet.
        }
        received += 1
        return true
    }

    /// Records one received packet.
    /// - Parameters:
    ///   - sequenceNumber, timestamp: from the RTP header.
    ///   - arrivalTime: local monotonic arrival time in nanoseconds.
    /// - Returns: true when the packet passed A.1 validation and was counted.
    @discardableResult
    public mutating func update(sequenceNumber: UInt16, timestamp: UInt32, arrivalTime: UInt64) -> Bool {
        guard updateSequence(sequenceNumber) else { return false }
        // A.8: transit = arrival (in RTP units) - timestamp; both wrap mod 2^32.
        let arrival = UInt32(truncatingIfNeeded: rtpUnits(arrivalTime))
        let transit = Int32(bitPattern: arrival &- timestamp)
        if haveTransit {
            let d = Int64(transit &- lastTransit).magnitude
            let dClamped = UInt32(min(d, UInt64(UInt32.max >> 5)))
            // J += (|D| - J) / 16, in the RFC's scaled integer form.
            jitterQ4 = jitterQ4 &+ dClamped &- ((jitterQ4 &+ 8) >> 4)
        }
        lastTransit = transit
        haveTransit = true
        return true
    }

    /// Converts nanoseconds to RTP clock units without overflow.
    @inline(__always) func rtpUnits(_ ns: UInt64) -> UInt64 {
        let rate = UInt64(clockRate)
        return (ns / 1_000_000_000) &* rate &+ (ns % 1_000_000_000) * rate / 1_000_000_000
    }

    /// A.1: cycles + max_seq.
    public var extendedHighestSequence: UInt32 { cycles &+ UInt32(maxSequence) }

    /// A.3: packets expected so far.
    public var expected: Int64 {
        guard isValid else { return 0 }
        return Int64(extendedHighestSequence) - Int64(baseSequence) + 1
    }

    /// A.3: cumulative packets lost (negative with duplicates).
    public var cumulativeLost: Int64 { isValid ? expected - Int64(received) : 0 }

    /// A.8: interarrival jitter in RTP timestamp units.
    public var jitter: UInt32 { jitterQ4 >> 4 }

    /// Remembers a sender report from this source for LSR/DLSR (§6.4.1).
    /// - Parameters:
    ///   - ntpTimestamp: the SR's 64-bit NTP timestamp.
    ///   - arrivalTime: local monotonic arrival time in nanoseconds.
    public mutating func senderReportReceived(ntpTimestamp: UInt64, arrivalTime: UInt64) {
        lastSR = UInt32(truncatingIfNeeded: ntpTimestamp >> 16)
        lastSRArrival = arrivalTime
        haveSR = true
    }

    /// Builds the report block for this source and starts a new interval
    /// for fraction lost (A.3). `now` is monotonic nanoseconds.
    public mutating func makeReportBlock(ssrc: UInt32, now: UInt64) -> RTCPReportBlock {
        let expected = self.expected
        var lost = expected - Int64(received)
        lost = min(max(lost, Int64(RTCPReportBlock.minLost)), Int64(RTCPReportBlock.maxLost))
        let expectedInterval = expected - expectedPrior
        expectedPrior = expected
        let receivedInterval = Int64(received) - Int64(receivedPrior)
        receivedPrior = received
        let lostInterval = expectedInterval - receivedInterval
        var fraction: UInt8 = 0
        if expectedInterval > 0, lostInterval > 0 {
            fraction = UInt8(min((lostInterval << 8) / expectedInterval, 255))
        }
        var dlsr: UInt32 = 0
        if haveSR, now >= lastSRArrival {
            // DLSR is in units of 1/65536 s.
            let delay = (now - lastSRArrival)
            let units = (delay / 1_000_000_000) << 16 + ((delay % 1_000_000_000) << 16) / 1_000_000_000
            dlsr = UInt32(min(units, UInt64(UInt32.max)))
        }
        return RTCPReportBlock(ssrc: ssrc, fractionLost: fraction, cumulativeLost: isValid ? Int32(lost) : 0,
                               extendedHighestSequence: isValid ? extendedHighestSequence : 0, jitter: jitter,
                               lastSenderReport: haveSR ? lastSR : 0, delaySinceLastSenderReport: dlsr)
    }
}

/// Unwraps 16-bit sequence numbers into a monotonic 64-bit space by picking
/// the candidate nearest the previous value (for jitter buffers, NACK
/// trackers and recorders that need an order across wraps).
public struct RTPSequenceUnwrapper: Sendable {
    private var last: Int64?

    public init() {}

    /// The extended value of `seq`.
    public mutating func unwrap(_ seq: UInt16) -> Int64 {
        guard let prev = last else {
            last = Int64(seq)
            return Int64(seq)
        }
        let delta = Int64(Int16(bitPattern: seq &- UInt16(truncatingIfNeeded: prev)))
        let value = prev + delta
        if value > prev { last = value }
        return value
    }
}
