// libFuzzer entry point for ParleyHTTP's WebSocket frame and message
// decoders. Built by tools/fuzz/build websocket together with the module's sources.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocket(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let broken = CodecSelfCheck.webSocket(input) {
        fatalError("WebSocket invariant broken: \(broken)")
    }
    return 0
}
