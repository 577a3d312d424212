// libFuzzer entry point for ParleySRTP: unprotect of arbitrary bytes, protect
// → unprotect round trip, forged-bit and replay refusal, both suites, RTP and
// RTCP (SRTPSelfCheck). Built by tools/fuzz/run-srtp with the module's sources.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSRTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if let broken = SRTPSelfCheck.check(Array(UnsafeBufferPointer(start: data, count: size))) {
        fatalError("SRTP invariant broken: \(broken)")
    }
    return 0
}
