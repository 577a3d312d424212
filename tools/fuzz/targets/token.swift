// libFuzzer entry point for ParleyAuth's JWT verification and base64url
// decoding. Built by tools/fuzz/build token with the module's sources.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToken(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let broken = TokenSelfCheck.token(input) {
        fatalError("token invariant broken: \(broken)")
    }
    return 0
}
