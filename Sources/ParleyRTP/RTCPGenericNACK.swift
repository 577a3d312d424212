import ParleyCore

// Generic NACK FCI, RFC 4585 §6.2.1 (RTPFB, FMT = 1):
//
// |            PID                |             BLP               |
//
// PID is a lost sequence number; bit i of BLP (LSB = bit 0) reports
// PID + i + 1 as lost too.

/// One NACK FCI entry.
public struct RTCPNACKPair: Equatable, Sendable {
    public var packetID: UInt16
    public var bitmaskOfLostPackets: UInt16
    public init(packetID: UInt16, bitmaskOfLostPackets: UInt16) {
        self.packetID = packetID
        self.bitmaskOfLostPackets = bitmaskOfLostPackets
    }

    /// Calls `body` for every sequence number this entry reports lost, in order.
    @inlinable public func forEachLost(_ body: (UInt16) -> Void) {
        body(packetID)
        var mask = bitmaskOfLostPackets
        var i: UInt16 = 1
        while mask != 0 {
            if mask & 1 != 0 { body(packetID &+ i) }
            mask >>= 1
            i += 1
        }
    }
}

/// RTCP transport-layer generic NACK (RFC 4585 §6.2.1).
public struct RTCPGenericNACK: Equatable, Sendable, RTCPPacketCodable {
    public var senderSSRC: UInt32
    public var mediaSSRC: UInt32
    public var pairs: [RTCPNACKPair]

    public init(senderSSRC: UInt32, mediaSSRC: UInt32, pairs: [RTCPNACKPair]) {
        self.senderSSRC = senderSSRC
        self.mediaSSRC = mediaSSRC
        self.pairs = pairs
    }

    /// Packs lost sequence numbers (in ascending, wrap-aware order) into PID+BLP pairs.
    public init(senderSSRC: UInt32, mediaSSRC: UInt32, lost: [UInt16]) {
        var pairs: [RTCPNACKPair] = []
        for seq in lost {
            if var last = pairs.last {
                let delta = seq &- last.packetID
                if delta >= 1, delta <= 16 {
                    last.bitmaskOfLostPackets |= 1 << (delta - 1)
                    pairs[pairs.count - 1] = last
                    continue
                }
                if delta == 0 { continue }
            }
            pairs.append(RTCPNACKPair(packetID: seq, bitmaskOfLostPackets: 0))
        }
        self.init(senderSSRC: senderSSRC, mediaSSRC: mediaSSRC, pairs: pairs)
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.transportFeedback, format: RTCP.Format.genericNACK)
        let b = view.body
        guard b.count >= 12 else { throw .badRTCPBody(type: view.packetType, reason: "NACK without an FCI entry") }
        senderSSRC = b.u32(0)
        mediaSSRC = b.u32(4)
        pairs = stride(from: 8, to: b.count - 3, by: 4).map {
            RTCPNACKPair(packetID: b.u16($0), bitmaskOfLostPackets: b.u16($0 + 2))
        }
    }

    /// Every sequence number reported lost, PID+BLP expanded (allocates).
    public var lostSequenceNumbers: [UInt16] {
        var out: [UInt16] = []
        for p in pairs { p.forEachLost { out.append($0) } }
        return out
    }

    /// Expands PID+BLP straight from a packet view, without allocating: for the relay's retransmit path.
    public static func forEachLost(in view: RTCPPacketView, _ body: (UInt16) -> Void) {
        guard view.packetType == RTCP.PacketType.transportFeedback, view.count == RTCP.Format.genericNACK else { return }
        let b = view.body
        var off = 8
        while off + 4 <= b.count {
            RTCPNACKPair(packetID: b.u16(off), bitmaskOfLostPackets: b.u16(off + 2)).forEachLost(body)
            off += 4
        }
    }

    public var encodedSize: Int { RTCP.headerSize + 8 + 4 * pairs.count }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        guard !pairs.isEmpty else { throw .badRTCPBody(type: RTCP.PacketType.transportFeedback, reason: "NACK without an FCI entry") }
        try writeFeedbackHeader(buffer, format: RTCP.Format.genericNACK, type: RTCP.PacketType.transportFeedback, size: size,
                                senderSSRC: senderSSRC, mediaSSRC: mediaSSRC)
        var off = 12
        for p in pairs {
            buffer.put16(p.packetID, at: off)
            buffer.put16(p.bitmaskOfLostPackets, at: off + 2)
            off += 4
        }
        return size
    }
}
