import ParleySRTP

/// Invariants checked on arbitrary input by the fuzz harness
/// (tools/fuzz/targets/dtls.swift) and by the XCTest replay of its committed
/// corpus: the record demultiplexer, then a server endpoint (OpenSSL) fed
/// what the demultiplexer lets through. Returns nil when every invariant
/// holds, else what broke.
enum DTLSSelfCheck {
    static let context: DTLSContext? = try? DTLSContext(certificate: .generate())

    static func check(_ input: [UInt8]) -> String? {
        guard let context else { return "no DTLS context" }
        // The input as one datagram, then as several (split at each 0xFF byte).
        var datagrams = [input]
        datagrams += input.split(separator: 0xFF, omittingEmptySubsequences: true).prefix(8).map(Array.init)
        guard let server = try? DTLSEndpoint(context: context, role: .server, remoteFingerprint: nil) else { return "endpoint" }
        for d in datagrams {
            let wellFormed = d.withUnsafeBytes { DTLSRecords.isWellFormed($0) }
            let (what, out) = d.withUnsafeBytes { server.receive($0) }
            // 1. The demultiplexer's verdict is what the endpoint reports for garbage, and garbage gets no answer.
            if !wellFormed && (what != .malformed || !out.isEmpty) { return "garbage was handed to OpenSSL" }
            if wellFormed && what == .malformed { return "a well-formed datagram was called malformed" }
            // 2. Whatever goes out is whole records within the MTU.
            for o in out {
                if o.count > context.mtu { return "a datagram of \(o.count) bytes over the MTU" }
                if !o.withUnsafeBytes({ DTLSRecords.isWellFormed($0) }) { return "the endpoint sent a malformed datagram" }
            }
        }
        // 3. Nobody completes a handshake with arbitrary bytes (no keys without a certificate of ours).
        if case .connected = server.state { return "connected on arbitrary input" }
        return nil
    }
}
