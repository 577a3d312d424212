/// Per-SSRC state of one SRTPContext (RFC 3711 §3.2.3 cryptographic
/// context minus the keys, which are shared by every SSRC of a context).
struct SRTPStream {
    var ssrc: UInt32 = 0
    /// Highest authenticated (inbound) or protected (outbound) RTP packet
    /// index: ROC · 2¹⁶ + SEQ (48 bits). Meaningful when `rtpSeen`.
    var rtpHighest: UInt64 = 0
    var rtpSeen = false
    /// Highest SRTCP index received (inbound). Meaningful when `rtcpSeen`.
    var rtcpHighest: UInt32 = 0
    var rtcpSeen = false
    /// Next SRTCP index to send (outbound), 31 bits (RFC 3711 §3.4).
    var rtcpNext: UInt32 = 0
    /// Use clock for evicting the least recently used stream when the table is full.
    var lastUse: UInt64 = 0
}

/// A small table of SRTPStream with linear lookup and a last-hit cache (a
/// context serves a handful of SSRCs), plus one replay bitmap per stream.
/// Grows only when a new SSRC appears; nothing is allocated per packet.
///
/// Replay bitmaps are circular: bit (index mod N) records index, valid for
/// the N indices up to the highest one; advancing the highest index clears
/// the bits it passes, so in-order traffic costs O(1) per packet.
struct SRTPStreamTable {
    /// Most SSRCs one context keeps; past it the least recently used stream is
    /// forgotten (its replay state with it).
    static let maxStreams = 512
    /// SRTCP replay window (indices), as libsrtp's.
    static let rtcpWindow: UInt32 = 128

    private(set) var streams: UnsafeMutablePointer<SRTPStream>
    private(set) var count = 0
    private var capacity: Int
    /// Replay bitmaps: per stream `rtpWords` words for RTP then 2 for SRTCP.
    private var bits: UnsafeMutablePointer<UInt64>
    let rtpWords: Int
    let rtpWindow: UInt64
    private var clock: UInt64 = 0
    private var last = 0

    init(replayWindow: Int) {
        var words = 1
        while words * 64 < replayWindow { words *= 2 }
        rtpWords = words
        rtpWindow = UInt64(replayWindow)
        capacity = 4
        streams = .allocate(capacity: capacity)
        bits = .allocate(capacity: capacity * (words + 2))
    }

    func destroy() {
        streams.deallocate()
        bits.deallocate()
    }

    /// The stream slot for `ssrc`, or nil.
    @inline(__always)
    mutating func find(_ ssrc: UInt32) -> Int? {
        clock &+= 1
        if last < count, streams[last].ssrc == ssrc {
            streams[last].lastUse = clock
            return last
        }
        for i in 0..<count where streams[i].ssrc == ssrc {
            last = i
            streams[i].lastUse = clock
            return i
        }
        return nil
    }

    /// Adds a fresh stream for `ssrc` (caller checked it is absent).
    mutating func insert(_ ssrc: UInt32) -> Int {
        let slot: Int
        if count < capacity {
            slot = count
            count += 1
        } else if capacity < Self.maxStreams {
            let newCapacity = min(capacity * 2, Self.maxStreams)
            let s = UnsafeMutablePointer<SRTPStream>.allocate(capacity: newCapacity)
            s.moveInitialize(from: streams, count: count)
            streams.deallocate()
            streams = s
            let per = rtpWords + 2
            let b = UnsafeMutablePointer<UInt64>.allocate(capacity: newCapacity * per)
            b.moveInitialize(from: bits, count: count * per)
            bits.deallocate()
            bits = b
            capacity = newCapacity
            slot = count
            count += 1
        } else {
            var oldest = 0
            for i in 1..<count where streams[i].lastUse < streams[oldest].lastUse { oldest = i }
            slot = oldest
        }
        (streams + slot).initialize(to: SRTPStream(ssrc: ssrc, lastUse: clock))
        (bits + slot * (rtpWords + 2)).initialize(repeating: 0, count: rtpWords + 2)
        last = slot
        return slot
    }

    // MARK: RTP index and replay (RFC 3711 §3.3.1, §3.3.2, Appendix A)

    /// The packet index for `seq` given the stream's highest index.
    /// Follows libsrtp where the RFC leaves room: while the highest index is
    /// at most 2¹⁵ the ROC is taken as 0 (so a new stream never guesses ROC −1).
    @inline(__always)
    static func estimateIndex(seq: UInt16, highest: UInt64, seen: Bool) -> UInt64 {
        guard seen, highest > 0x8000 else { return UInt64(seq) }
        let roc = UInt32(truncatingIfNeeded: highest >> 16)
        let sl = Int(UInt16(truncatingIfNeeded: highest))
        var v = roc
        if sl < 0x8000 {
            if Int(seq) - sl > 0x8000 { v = roc &- 1 }
        } else if sl - 0x8000 > Int(seq) {
            v = roc &+ 1
        }
        return UInt64(v) << 16 | UInt64(seq)
    }

    enum ReplayCheck { case fresh, seen, old }

    /// Whether `index` is new on stream `slot`, already seen within the
    /// window, or older than the window (RFC 3711 §3.3.2).
    @inline(__always)
    func rtpCheck(_ slot: Int, _ index: UInt64) -> ReplayCheck {
        guard streams[slot].rtpSeen else { return .fresh }
        let highest = streams[slot].rtpHighest
        if index > highest { return .fresh }
        if highest - index >= rtpWindow { return .old }
        let b = Int(truncatingIfNeeded: index) & (rtpWords * 64 - 1)
        return bits[slot * (rtpWords + 2) + b >> 6] & ((1 as UInt64) << UInt64(b & 63)) == 0 ? .fresh : .seen
    }

    /// Records `index` as seen (after authentication, or after protecting).
    @inline(__always)
    mutating func rtpRecord(_ slot: Int, _ index: UInt64) {
        let words = bits + slot * (rtpWords + 2)
        let mask = UInt64(rtpWords * 64 - 1)
        if !streams[slot].rtpSeen {
            streams[slot].rtpSeen = true
            streams[slot].rtpHighest = index
        } else if index > streams[slot].rtpHighest {
            Self.advance(words, rtpWords, from: streams[slot].rtpHighest, to: index, mask: mask)
            streams[slot].rtpHighest = index
        }
        let b = Int(index & mask)
        words[b >> 6] |= (1 as UInt64) << UInt64(b & 63)
    }

    // MARK: SRTCP replay (explicit 31-bit index)

    @inline(__always)
    func rtcpIsFresh(_ slot: Int?, _ index: UInt32) -> Bool {
        guard let slot, streams[slot].rtcpSeen else { return true }
        let highest = streams[slot].rtcpHighest
        if index > highest { return true }
        if highest - index >= Self.rtcpWindow { return false }
        let b = Int(index & 127)
        return bits[slot * (rtpWords + 2) + rtpWords + b >> 6] & ((1 as UInt64) << UInt64(b & 63)) == 0
    }

    @inline(__always)
    mutating func rtcpRecord(_ slot: Int, _ index: UInt32) {
        let words = bits + slot * (rtpWords + 2) + rtpWords
        if !streams[slot].rtcpSeen {
            streams[slot].rtcpSeen = true
            streams[slot].rtcpHighest = index
        } else if index > streams[slot].rtcpHighest {
            Self.advance(words, 2, from: UInt64(streams[slot].rtcpHighest), to: UInt64(index), mask: 127)
            streams[slot].rtcpHighest = index
        }
        let b = Int(index & 127)
        words[b >> 6] |= (1 as UInt64) << UInt64(b & 63)
    }

    /// Clears the bits of indices (from, to] in a circular bitmap of `words` words.
    @inline(__always)
    private static func advance(_ words: UnsafeMutablePointer<UInt64>, _ wordCount: Int, from: UInt64, to: UInt64,
                                mask: UInt64) {
        if to - from > mask {
            words.update(repeating: 0, count: wordCount)
            return
        }
        var i = from &+ 1
        while i <= to {
            let b = Int(i & mask)
            words[b >> 6] &= ~((1 as UInt64) << UInt64(b & 63))
            i &+= 1
        }
    }

    // MARK: Outbound SRTCP index

    /// The next SRTCP index for stream `slot` (31 bits, wrapping).
    @inline(__always)
    mutating func nextRTCPIndex(_ slot: Int) -> UInt32 {
        let i = streams[slot].rtcpNext
        streams[slot].rtcpNext = (i &+ 1) & 0x7FFF_FFFF
        return i
    }
}
