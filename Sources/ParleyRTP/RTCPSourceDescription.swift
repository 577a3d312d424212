import ParleyCore

// Source description, RFC 3550 §6.5:
//
// |V=2|P|    SC   |  PT=SDES=202  |             length            |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
// |                          SSRC/CSRC_1                          |
// |                           SDES items                          |
// |                              ...                              |
// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//
// Item: |  type (8)  |  length (8)  | text (length bytes) ...
// The item list ends with one or more zero octets up to the next word.

/// One SDES item (RFC 3550 §6.5): type 1 CNAME, 2 NAME, ... 8 PRIV.
public struct RTCPSourceDescriptionItem: Equatable, Sendable {
    public static let cname: UInt8 = 1
    public var type: UInt8
    public var text: [UInt8]
    public init(type: UInt8, text: [UInt8]) {
        self.type = type
        self.text = text
    }
}

/// One SDES chunk: a source and its items.
public struct RTCPSourceDescriptionChunk: Equatable, Sendable {
    public var source: UInt32
    public var items: [RTCPSourceDescriptionItem]
    public init(source: UInt32, items: [RTCPSourceDescriptionItem]) {
        self.source = source
        self.items = items
    }

    var encodedSize: Int { padded4(4 + items.reduce(0) { $0 + 2 + $1.text.count } + 1) }
}

/// RTCP source description (RFC 3550 §6.5).
public struct RTCPSourceDescription: Equatable, Sendable, RTCPPacketCodable {
    public var chunks: [RTCPSourceDescriptionChunk]

    public init(chunks: [RTCPSourceDescriptionChunk]) { self.chunks = chunks }

    /// A single-chunk SDES carrying a CNAME, as every compound packet needs (§6.1).
    public init(ssrc: UInt32, cname: String) {
        self.init(chunks: [RTCPSourceDescriptionChunk(source: ssrc, items: [
            RTCPSourceDescriptionItem(type: RTCPSourceDescriptionItem.cname, text: Array(cname.utf8)),
        ])])
    }

    public init(_ view: RTCPPacketView) throws(RTPError) {
        try expect(view, type: RTCP.PacketType.sourceDescription)
        let b = view.body
        var off = 0
        chunks = []
        for _ in 0..<Int(view.count) {
            guard off + 4 <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "chunk past end") }
            var chunk = RTCPSourceDescriptionChunk(source: b.u32(off), items: [])
            off += 4
            while true {
                guard off < b.count else { throw .badRTCPBody(type: view.packetType, reason: "item list not terminated") }
                let type = b[off]
                if type == 0 {
                    // End of list: skip to the next word boundary (§6.5).
                    off = padded4(off + 1)
                    break
                }
                guard off + 2 <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "item header past end") }
                let len = Int(b[off + 1])
                guard off + 2 + len <= b.count else { throw .badRTCPBody(type: view.packetType, reason: "item past end") }
                chunk.items.append(RTCPSourceDescriptionItem(type: type, text: Array(b.slice((off + 2)..<(off + 2 + len)))))
                off += 2 + len
            }
            chunks.append(chunk)
        }
    }

    public var encodedSize: Int { RTCP.headerSize + chunks.reduce(0) { $0 + $1.encodedSize } }

    @discardableResult
    public func write(into buffer: UnsafeMutableRawBufferPointer) throws(RTPError) -> Int {
        let size = encodedSize
        try writeRTCPHeader(buffer, count: chunks.count, type: RTCP.PacketType.sourceDescription, size: size)
        var off = 4
        for c in chunks {
            let end = off + c.encodedSize
            buffer.put32(c.source, at: off)
            off += 4
            for item in c.items {
                guard item.type != 0, item.text.count <= 255 else {
                    throw .badRTCPBody(type: RTCP.PacketType.sourceDescription, reason: "item type 0 or text over 255 bytes")
                }
                buffer[off] = item.type
                buffer[off + 1] = UInt8(item.text.count)
                buffer.putBytes(item.text, at: off + 2)
                off += 2 + item.text.count
            }
            buffer.zero(off..<end)
            off = end
        }
        return size
    }
}
