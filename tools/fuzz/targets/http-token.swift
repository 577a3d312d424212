// libFuzzer entry point for ParleyHTTP's JWT verification, base64url and
// request-target decoding. Built by tools/fuzz/build http-token with the module's sources.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToken(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let broken = CodecSelfCheck.token(input) {
        fatalError("token invariant broken: \(broken)")
    }
    return 0
}
