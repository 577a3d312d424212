// libFuzzer entry point for ParleySRTP: unprotect of arbitrary bytes,
// protect → unprotect round trips (both suites, RTP and RTCP), a flipped bit
// and a replay refused, SDES parsing. Built by tools/fuzz/run-http with the
// module's sources; the invariants are in SRTPSelfCheck.swift.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSRTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let broken = SRTPSelfCheck.check(input) {
        fatalError("SRTP invariant broken: \(broken)")
    }
    return 0
}
