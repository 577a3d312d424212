import ParleyCore

/// What every RTCP packet value can do.
public protocol RTCPPacketEncodable {
    /// Bytes `write(into:)` produces (header included, always a multiple of 4).
    var encodedSize: Int { get }
    /// Writes the packet at the start of `buffer`; returns the bytes written.
    func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int
}

/// What every typed RTCP packet value can do: decode from a view, and build.
public protocol RTCPPacketCodable: RTCPPacketEncodable {
    /// Decodes one packet view; throws on the wrong type/format or a malformed body.
    init(_ view: RTCPPacketView) throws(RTPError)
}

extension RTCPPacketCodable {
    /// Parses one RTCP packet that fills `bytes` exactly.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(RTPError) {
        try self.init(RTCPPacketView(parsing: bytes))
    }
}

extension RTCPPacketEncodable {
    /// The encoded packet as a new array (allocates; for tests and tools).
    public func encoded() throws(RTPError) -> [UInt8] {
        try encodeToArray(size: encodedSize) { (b) throws(RTPError) in try write(into: b) }
    }
}

// MARK: - Any packet, compound packets

/// One RTCP packet of any supported type.
public enum RTCPPacket: Equatable, Sendable, RTCPPacketCodable {
    case senderReport(RTCPSenderReport)
    case receiverReport(RTCPReceiverReport)
    case sourceDescription(RTCPSourceDescription)
    case goodbye(RTCPGoodbye)
    case applicationDefined(RTCPApplicationDefined)
    case genericNACK(RTCPGenericNACK)
    case pictureLossIndication(RTCPPictureLossIndication)
    case fullIntraRequest(RTCPFullIntraRequest)
    case receiverEstimatedMaximumBitrate(RTCPReceiverEstimatedMaximumBitrate)
    case unknown(RTCPUnknownPacket)

    /// Decodes a packet view into its typed value. Unknown types and formats
    /// become `.unknown`; known ones with a malformed body throw.
    public init(_ view: RTCPPacketView) throws(RTPError) {
        switch (view.packetType, view.count) {
        case (RTCP.PacketType.senderReport, _): self = .senderReport(try RTCPSenderReport(view))
        case (RTCP.PacketType.receiverReport, _): self = .receiverReport(try RTCPReceiverReport(view))
        case (RTCP.PacketType.sourceDescription, _): self = .sourceDescription(try RTCPSourceDescription(view))
        case (RTCP.PacketType.goodbye, _): self = .goodbye(try RTCPGoodbye(view))
        case (RTCP.PacketType.applicationDefined, _): self = .applicationDefined(try RTCPApplicationDefined(view))
        case (RTCP.PacketType.transportFeedback, RTCP.Format.genericNACK): self = .genericNACK(try RTCPGenericNACK(view))
        case (RTCP.PacketType.payloadFeedback, RTCP.Format.pictureLossIndication):
            self = .pictureLossIndication(try RTCPPictureLossIndication(view))
        case (RTCP.PacketType.payloadFeedback, RTCP.Format.fullIntraRequest):
            self = .fullIntraRequest(try RTCPFullIntraRequest(view))
        case (RTCP.PacketType.payloadFeedback, RTCP.Format.applicationLayerFeedback) where RTCPReceiverEstimatedMaximumBitrate.matches(view):
            self = .receiverEstimatedMaximumBitrate(try RTCPReceiverEstimatedMaximumBitrate(view))
        default: self = .unknown(RTCPUnknownPacket(view))
        }
    }

    public var encodedSize: Int {
        switch self {
        case let .senderReport(p): return p.encodedSize
        case let .receiverReport(p): return p.encodedSize
        case let .sourceDescription(p): return p.encodedSize
        case let .goodbye(p): return p.encodedSize
        case let .applicationDefined(p): return p.encodedSize
        case let .genericNACK(p): return p.encodedSize
        case let .pictureLossIndication(p): return p.encodedSize
        case let .fullIntraRequest(p): return p.encodedSize
        case let .receiverEstimatedMaximumBitrate(p): return p.encodedSize
        case let .unknown(p): return p.encodedSize
        }
    }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        switch self {
        case let .senderReport(p): return try p.write(into: buffer)
        case let .receiverReport(p): return try p.write(into: buffer)
        case let .sourceDescription(p): return try p.write(into: buffer)
        case let .goodbye(p): return try p.write(into: buffer)
        case let .applicationDefined(p): return try p.write(into: buffer)
        case let .genericNACK(p): return try p.write(into: buffer)
        case let .pictureLossIndication(p): return try p.write(into: buffer)
        case let .fullIntraRequest(p): return try p.write(into: buffer)
        case let .receiverEstimatedMaximumBitrate(p): return try p.write(into: buffer)
        case let .unknown(p): return try p.write(into: buffer)
        }
    }
}
