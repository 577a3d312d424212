// libFuzzer target for the RTP parser: parse → build → parse must give the
// same structure, and building that structure again the same bytes.
// Built by tools/fuzz/build rtp (compiled together with Sources/ParleyRTP).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    _ = MediaDemultiplexer.classify(bytes)
    guard let view = try? RTPPacketView(parsing: bytes) else { return 0 }
    // Touch every accessor: none may trap on a packet that parsed.
    var sink = Int(view.version) &+ Int(view.payloadType) &+ Int(view.sequenceNumber) &+ Int(view.timestamp)
    sink &+= Int(view.ssrc) &+ view.payload.count &+ view.paddingSize &+ view.extensionBody.count
    for i in 0..<view.csrcCount { sink &+= Int(view.csrc(at: i)) }
    for e in view.extensions { sink &+= Int(e.id) &+ e.data.count &+ Int(e.data.first ?? 0) &+ Int(e.data.last ?? 0) }
    for id in UInt8(0)...15 { sink &+= view.extensionElement(id: id)?.count ?? 0 }
    precondition(sink != Int.min)

    let packet = RTPPacket(view)
    let encoded: [UInt8]
    do { encoded = try packet.encoded() } catch { fatalError("parsed packet does not build: \(error)") }
    precondition(encoded.count == packet.encodedSize)
    let again: RTPPacket
    do { again = try encoded.withUnsafeBytes { try RTPPacket(parsing: $0) } } catch { fatalError("built packet does not parse: \(error)") }
    precondition(again == packet, "parse → build → parse changed the packet")
    precondition((try? again.encoded()) == encoded, "build is not stable")

    // Rewrites keep the packet parseable and change only their fields.
    var copy = encoded
    copy.withUnsafeMutableBytes { b in
        RTPRewrite.setSSRC(0xDEAD_BEEF, in: b)
        RTPRewrite.setSequenceNumber(7, in: b)
        RTPRewrite.setPayloadType(99, in: b)
        RTPRewrite.setMarker(true, in: b)
    }
    guard var rewritten = try? copy.withUnsafeBytes({ try RTPPacket(parsing: $0) }) else { fatalError("rewrite broke the packet") }
    rewritten.header.ssrc = packet.header.ssrc
    rewritten.header.sequenceNumber = packet.header.sequenceNumber
    rewritten.header.payloadType = packet.header.payloadType
    rewritten.header.marker = packet.header.marker
    precondition(rewritten == packet, "rewrite touched other fields")
    return 0
}
