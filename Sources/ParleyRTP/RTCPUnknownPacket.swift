import ParleyCore

/// Any RTCP packet we do not model: kept as its header fields and body.
public struct RTCPUnknownPacket: Equatable, Sendable, RTCPPacketCodable {
    public var packetType: UInt8
    public var count: UInt8
    /// The body after the header, padding removed (written back padded to the word, RFC 3550 padding when it does not end on one).
    public var body: [UInt8]

    public init(packetType: UInt8, count: UInt8, body: [UInt8]) {
        self.packetType = packetType
        self.count = count
        self.body = body
    }

    public init(_ view: RTCPPacketView) {
        self.init(packetType: view.packetType, count: view.count, body: Array(view.body))
    }

    public var encodedSize: Int { RTCP.headerSize + padded4(body.count) }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: Int(count), type: packetType, size: size)
        buffer.putBytes(body, at: 4)
        finishRTCPPadding(buffer, content: 4 + body.count, size: size)
        return size
    }
}
