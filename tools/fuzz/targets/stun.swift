// libFuzzer target for the STUN parser and BindingResponder: parse → build →
// parse must give the same message; the responder must never trap and its
// responses must parse and carry the right XOR-MAPPED-ADDRESS.
// Built by tools/fuzz/build stun (compiled together with Sources/ParleySTUN).

let fuzzKey: [UInt8] = Array("VOkJxbRl1RmTxUk/WvJxBt".utf8)
let fuzzSource = STUNAddress(ipv6High: 0x2001_0DB8_0000_0000, low: 5, port: 3478)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSTUN(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var response = [UInt8](repeating: 0, count: 2048)
    response.withUnsafeMutableBytes { out in
        let outcome = try? BindingResponder(software: "fuzz").respond(to: bytes, from: fuzzSource, into: out) { _ in
            STUNCredential(key: fuzzKey, participant: 1)
        }
        guard let o = outcome else { return }
        guard let r = try? STUNMessageView(parsing: UnsafeRawBufferPointer(rebasing: out[0..<o.length])) else {
            fatalError("responder wrote an unparseable response")
        }
        if case .success = o { precondition((try? r.xorMappedAddress()) == fuzzSource, "wrong XOR-MAPPED-ADDRESS") }
        precondition(r.fingerprintOffset == nil || r.verifyFingerprint(), "bad FINGERPRINT in our response")
    }

    guard let view = try? STUNMessageView(parsing: bytes) else { return 0 }
    _ = view.username
    _ = view.software
    _ = view.priority
    _ = view.iceControlling
    _ = view.iceControlled
    _ = view.useCandidate
    _ = try? view.errorCode()
    _ = view.verifyFingerprint()
    fuzzKey.withUnsafeBytes { k in
        _ = view.verifyMessageIntegrity(key: k)
        _ = view.verifyMessageIntegritySHA256(key: k)
    }
    var unknown = 0
    view.forEachUnknownRequiredAttribute { _ in unknown += 1 }
    precondition((unknown > 0) == view.hasUnknownRequiredAttributes)

    // Address attributes: decode → encode → decode is the identity.
    for xor in [true, false] {
        guard let a = try? (xor ? view.xorMappedAddress() : view.mappedAddress()) else { continue }
        var buf = [UInt8](repeating: 0, count: 64)
        let back: STUNAddress? = buf.withUnsafeMutableBytes { b in
            guard var w = try? STUNMessageWriter(into: b, type: view.type, transactionID: view.transactionID) else { return nil }
            if xor { try? w.appendXORMappedAddress(a) } else { try? w.appendMappedAddress(a) }
            let m = try? STUNMessageView(parsing: w.bytes)
            return try? (xor ? m?.xorMappedAddress() : m?.mappedAddress())
        }
        precondition(back == a, "address round trip changed the address")
    }

    let message = STUNMessage(view)
    let encoded: [UInt8]
    do { encoded = try message.encoded() } catch { fatalError("parsed STUN does not build: \(error)") }
    let again: STUNMessage
    do { again = try encoded.withUnsafeBytes { try STUNMessage(parsing: $0) } } catch { fatalError("built STUN does not parse: \(error)") }
    precondition(again == message, "parse → build → parse changed the message")
    precondition((try? again.encoded()) == encoded, "build is not stable")
    return 0
}
