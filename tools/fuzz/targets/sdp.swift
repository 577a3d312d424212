// libFuzzer entry point for ParleySDP: SessionDescription parsing under its
// limits, WebRTCOffer checks, and the answer written for a taken offer
// parsing back section for section. Built by tools/fuzz/build sdp with the
// module's sources; the invariants are in SDPSelfCheck.swift.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSDP(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let broken = SDPSelfCheck.check(input) {
        fatalError("SDP invariant broken: \(broken)")
    }
    return 0
}
