import ParleyCore

// Goodbye, RFC 3550 §6.6:
//
// |V=2|P|    SC   |   PT=BYE=203  |             length            |
// |                           SSRC/CSRC                           |
// :                              ...                              :
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |     length    |               reason for leaving            ... (opt)

/// RTCP goodbye (RFC 3550 §6.6).
public struct RTCPGoodbye: Equatable, Sendable, RTCPPacketCodable {
    public var sources: [UInt32]
    /// Optional reason text (nil: absent).
    public var reason: [UInt8]?

    public init(sources: [UInt32], reason: [UInt8]? = nil) {
        self.sources = sources
        self.reason = reason
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.goodbye)
        let b = view.body
        let sc = Int(view.count)
        guard b.count >= 4 * sc else { throw .badRTCPBody(type: view.packetType, reason: "shorter than its source count") }
        sources = (0..<sc).map { b.u32(4 * $0) }
        let off = 4 * sc
        if off < b.count {
            let len = Int(b[off])
            guard off + 1 + len <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "reason past end") }
            reason = Array(b.slice((off + 1)..<(off + 1 + len)))
        } else {
            reason = nil
        }
    }

    public var encodedSize: Int { RTCP.headerSize + 4 * sources.count + (reason.map { padded4(1 + $0.count) } ?? 0) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        if let r = reason, r.count > 255 { throw .tooMany(field: "BYE reason bytes", count: r.count, max: 255) }
        try writeRTCPHeader(buffer, count: sources.count, type: RTCP.PacketType.goodbye, size: size)
        var off = 4
        for s in sources {
            buffer.put32(s, at: off)
            off += 4
        }
        if let r = reason {
            buffer[off] = UInt8(r.count)
            buffer.putBytes(r, at: off + 1)
            buffer.zero((off + 1 + r.count)..<size)
        }
        return size
    }
}
