// libFuzzer entry point for ParleyDTLS: the DTLS record demultiplexer and a
// server endpoint (OpenSSL over memory BIOs) fed what it lets through.
// Built by tools/fuzz/build dtls with the module's sources (ParleySRTP and
// ParleyCore as static modules); the invariants are in DTLSSelfCheck.swift.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDTLS(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let broken = DTLSSelfCheck.check(input) {
        fatalError("DTLS invariant broken: \(broken)")
    }
    return 0
}
