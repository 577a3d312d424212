import ParleyCore

/// A validated compound RTCP packet (RFC 3550 §6.1): iterate it to get each
/// packet as a view, without copying or allocating.
public struct RTCPCompoundView: Sequence {
    public let bytes: UnsafeRawBufferPointer
    /// Number of packets inside.
    public let packetCount: Int

    /// Validates every header and length; throws on the first malformed one.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(RTPError) {
        guard bytes.count >= RTCP.headerSize else { throw .truncated(need: RTCP.headerSize, have: bytes.count) }
        var off = 0
        var n = 0
        while off < bytes.count {
            guard bytes.count - off >= RTCP.headerSize else {
                throw .truncated(need: off + RTCP.headerSize, have: bytes.count)
            }
            let words = Int(bytes.u16(off + 2))
            let size = 4 * (words + 1)
            guard off + size <= bytes.count else { throw .badRTCPLength(offset: off, words: words) }
            _ = try RTCPPacketView(parsing: bytes.slice(off..<(off + size)))
            off += size
            n += 1
        }
        self.bytes = bytes
        self.packetCount = n
    }

    public struct Iterator: IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var offset = 0
        public mutating func next() -> RTCPPacketView? {
            guard offset < bytes.count else { return nil }
            let size = 4 * (Int(bytes.u16(offset + 2)) + 1)
            defer { offset += size }
            // Already validated by init(parsing:).
            return try? RTCPPacketView(parsing: bytes.slice(offset..<(offset + size)))
        }
    }

    public func makeIterator() -> Iterator { Iterator(bytes: bytes) }
}

extension RTCPPacket {
    /// Parses a whole compound packet into values (allocates; the packet
    /// path can iterate `RTCPCompoundView` instead).
    public static func parseCompound(_ bytes: UnsafeRawBufferPointer) throws(RTPError) -> [RTCPPacket] {
        let compound = try RTCPCompoundView(parsing: bytes)
        var out: [RTCPPacket] = []
        out.reserveCapacity(compound.packetCount)
        for view in compound { out.append(try RTCPPacket(view)) }
        return out
    }

    /// Bytes `writeCompound` produces.
    public static func compoundSize(_ packets: [RTCPPacket]) -> Int { packets.reduce(0) { $0 + $1.encodedSize } }

    /// Writes packets back to back into `buffer`; returns the bytes written.
    @discardableResult
    public static func writeCompound(_ packets: [RTCPPacket], into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = compoundSize(packets)
        guard buffer.count >= size else { throw .bufferTooSmall(need: size, have: buffer.count) }
        var off = 0
        for p in packets { off += try p.write(into: UnsafeMutableRawBufferPointer(rebasing: buffer[off...])) }
        return off
    }

    /// The compound packet as a new array (allocates; for tests and tools).
    public static func encodeCompound(_ packets: [RTCPPacket]) throws(RTPError) -> [UInt8] {
        try encodeToArray(size: compoundSize(packets)) { (b) throws(RTPError) in try writeCompound(packets, into: b) }
    }
}
