import ParleyCore

// Application-defined, RFC 3550 §6.7:
//
// |V=2|P| subtype |   PT=APP=204  |             length            |
// |                           SSRC/CSRC                           |
// |                          name (ASCII)                         |
// |                   application-dependent data                ...

/// RTCP application-defined packet (RFC 3550 §6.7).
public struct RTCPApplicationDefined: Equatable, Sendable, RTCPPacketCodable {
    public var subtype: UInt8
    public var ssrc: UInt32
    /// Four ASCII characters as a big-endian word.
    public var name: UInt32
    /// Application data; padded with zeros to a word on write.
    public var data: [UInt8]

    public init(subtype: UInt8, ssrc: UInt32, name: UInt32, data: [UInt8]) {
        self.subtype = subtype
        self.ssrc = ssrc
        self.name = name
        self.data = data
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.applicationDefined)
        let b = view.body
        guard b.count >= 8 else { throw .badRTCPBody(type: view.packetType, reason: "shorter than SSRC and name") }
        subtype = view.count
        ssrc = b.u32(0)
        name = b.u32(4)
        data = Array(b.slice(8..<b.count))
    }

    public var encodedSize: Int { RTCP.headerSize + 8 + padded4(data.count) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: Int(subtype), type: RTCP.PacketType.applicationDefined, size: size)
        buffer.put32(ssrc, at: 4)
        buffer.put32(name, at: 8)
        buffer.putBytes(data, at: 12)
        finishRTCPPadding(buffer, content: 12 + data.count, size: size)
        return size
    }
}
