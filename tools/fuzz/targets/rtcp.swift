// libFuzzer target for the RTCP compound parser: parse → build → parse must
// give equal packets, and building again the same bytes.
// Built by tools/fuzz/build rtcp (compiled together with Sources/ParleyRTP).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRTCP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let compound = try? RTCPCompoundView(parsing: bytes) else { return 0 }
    // The zero-copy path: iterate views and expand NACKs without decoding.
    var n = 0
    var lost = 0
    for view in compound {
        n += 1
        _ = view.senderSSRC
        _ = view.mediaSSRC
        _ = RTCPReceiverEstimatedMaximumBitrate.matches(view)
        RTCPGenericNACK.forEachLost(in: view) { _ in lost += 1 }
    }
    precondition(n == compound.packetCount)
    precondition(lost <= 17 * size)

    guard let packets = try? RTCPPacket.parseCompound(bytes) else { return 0 }
    precondition(packets.count == n)
    for p in packets {
        if case let .receiverEstimatedMaximumBitrate(r) = p { _ = r.bitrate }
        if case let .genericNACK(k) = p { precondition(k.lostSequenceNumbers.count >= k.pairs.count) }
    }
    let encoded: [UInt8]
    do { encoded = try RTCPPacket.encodeCompound(packets) } catch { fatalError("parsed RTCP does not build: \(error)") }
    let again: [RTCPPacket]
    do { again = try encoded.withUnsafeBytes { try RTCPPacket.parseCompound($0) } } catch { fatalError("built RTCP does not parse: \(error)") }
    precondition(again == packets, "parse → build → parse changed the packets")
    precondition((try? RTCPPacket.encodeCompound(again)) == encoded, "build is not stable")
    return 0
}
