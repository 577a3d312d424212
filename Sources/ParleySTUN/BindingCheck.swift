/// ICE-style connectivity checks with short-term credentials (RFC 8445
/// §7.2.2, RFC 7675 consent freshness), for both ends of a media socket:
/// building an authenticated Binding request, answering one, and checking
/// the answer. The relay uses it for its consent checks; clients use it for
/// their own Binding requests and to answer the relay's.
///
/// USERNAME is `responderUfrag:requesterUfrag`; MESSAGE-INTEGRITY is keyed
/// with the responder's password in the request and in the answer (§7.2.2,
/// §7.3).
public enum BindingCheck {
    /// Writes a Binding request into `out` and returns its length: USERNAME
    /// `username` and MESSAGE-INTEGRITY keyed with `key` when given (a
    /// stranger's request has neither), then FINGERPRINT. An ICE agent's
    /// check also carries PRIORITY and ICE-CONTROLLED (its tie-breaker),
    /// RFC 8445 §7.1.1–7.1.3: `ice` gives both.
    public static func writeRequest(into out: UnsafeMutableRawBufferPointer, transactionID: STUNTransactionID,
                                    username: [UInt8]?, key: [UInt8]?,
                                    ice: (priority: UInt32, controlledTieBreaker: UInt64)? = nil) throws(STUNError) -> Int {
        var w = try STUNMessageWriter(into: out, type: .bindingRequest, transactionID: transactionID)
        if let username { try w.append(.username, bytes: username) }
        if let ice {
            try w.append(.priority, uint32: ice.priority)
            try w.append(.iceControlled, uint64: ice.controlledTieBreaker)
        }
        if let key { try w.appendMessageIntegrity(key: key) }
        try w.appendFingerprint()
        return w.count
    }

    /// `writeRequest` into a new array, for clients off the packet path.
    public static func request(transactionID: STUNTransactionID = .random(), username: [UInt8]?,
                               key: [UInt8]?) throws(STUNError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 512)
        let n = out.withUnsafeMutableBytes { b in
            Result { () throws(STUNError) in try writeRequest(into: b, transactionID: transactionID, username: username, key: key) }
        }
        return Array(out[0..<(try n.get())])
    }

    /// How a Binding request was answered, as its sender sees it.
    public enum Reply: Sendable, Equatable {
        case success
        case error
    }

    /// Whether `bytes` is a Binding success or error response; nil for
    /// anything else (a request, not STUN). Credentials are not checked:
    /// `isAuthenticatedSuccess` does that.
    public static func reply(_ bytes: UnsafeRawBufferPointer) -> Reply? {
        guard let m = try? STUNMessageView(parsing: bytes) else { return nil }
        switch m.type {
        case .bindingSuccess: return .success
        case .bindingError: return .error
        default: return nil
        }
    }

    /// Answers `request` when it is a Binding request whose USERNAME starts
    /// with `ufrag` (up to the first ':') and whose MESSAGE-INTEGRITY
    /// verifies with `key`: writes the success response (XOR-MAPPED-ADDRESS
    /// of `source`, MESSAGE-INTEGRITY, FINGERPRINT) into `out` and returns its
    /// length. Returns nil for anything else (not STUN, not a request, other
    /// credentials), which the caller handles as it would without checks.
    public static func answer(_ request: UnsafeRawBufferPointer, from source: STUNAddress, ufrag: [UInt8], key: [UInt8],
                              into out: UnsafeMutableRawBufferPointer) -> Int? {
        let responder = BindingResponder(software: nil, alwaysFingerprint: true)
        let outcome = try? responder.respond(to: request, from: source, into: out) { username -> STUNCredential<Void>? in
            let end = username.firstIndex(of: UInt8(ascii: ":")) ?? username.count
            return username[0..<end].elementsEqual(ufrag) ? STUNCredential(key: key, participant: ()) : nil
        }
        if case .success(let n, _)? = outcome { return n }
        return nil
    }

    /// Whether `m` is a Binding success response whose MESSAGE-INTEGRITY
    /// (SHA-1 or SHA-256) verifies with `key` (the transaction ID is the
    /// caller's to match).
    public static func isAuthenticatedSuccess(_ m: STUNMessageView, key: [UInt8]) -> Bool {
        guard m.type == .bindingSuccess else { return false }
        if m.fingerprintOffset != nil, !m.verifyFingerprint() { return false }
        return key.withUnsafeBytes { k in
            m.messageIntegritySHA256Offset != nil ? m.verifyMessageIntegritySHA256(key: k)
                : m.messageIntegrityOffset != nil && m.verifyMessageIntegrity(key: k)
        }
    }
}
