// libFuzzer entry point for ParleyHTTP's request parser. Built by
// tools/fuzz/build http-request together with the module's sources, so the
// invariants in Sources/ParleyHTTP/CodecSelfCheck.swift are reachable.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let broken = CodecSelfCheck.httpRequest(input) {
        fatalError("HTTP request invariant broken: \(broken)")
    }
    return 0
}
