/// Short-term credentials for one USERNAME (RFC 8489 §9.1): the HMAC key
/// (the password bytes) and who they belong to.
public struct STUNCredential<Participant> {
    public var key: [UInt8]
    public var participant: Participant
    public init(key: [UInt8], participant: Participant) {
        self.key = key
        self.participant = participant
    }
}

/// What `BindingResponder` wrote into the caller's buffer.
public enum BindingOutcome<Participant> {
    /// A Binding success response of `length` bytes. `participant` is who
    /// authenticated (nil when no credential check was asked for): only
    /// then may the caller latch `source` as that participant's address.
    case success(length: Int, participant: Participant?)
    /// An error response of `length` bytes with this ERROR-CODE (400, 401, 420).
    case errorResponse(length: Int, code: Int)

    /// Bytes to send back to the source.
    public var length: Int {
        switch self {
        case let .success(n, _), let .errorResponse(n, _): return n
        }
    }
}

/// Answers STUN Binding requests (RFC 8489 §6.3, with ICE's short-term
/// credentials, §9.1). Pure: bytes in, bytes out, into a buffer the caller
/// owns; nothing allocated per request.
///
/// Errors thrown mean "drop silently": not STUN, not a request, or a bad
/// FINGERPRINT. Requests that are STUN but wrong get an error response.
public struct BindingResponder: Sendable {
    /// SOFTWARE attribute value for responses (§14.14), nil for none.
    public var software: [UInt8]?
    /// Add FINGERPRINT to every response, not only when the request had one.
    public var alwaysFingerprint: Bool

    public init(software: String? = nil, alwaysFingerprint: Bool = false) {
        self.software = software.map { Array($0.utf8) }
        self.alwaysFingerprint = alwaysFingerprint
    }

    /// Answers without authentication (a public STUN service).
    public func respond(to request: UnsafeRawBufferPointer, from source: STUNAddress,
                        into out: UnsafeMutableRawBufferPointer) throws(STUNError) -> BindingOutcome<Never> {
        try respond(to: request, from: source, into: out, authenticate: false) { (_: UnsafeRawBufferPointer) -> STUNCredential<Never>? in nil }
    }

    /// Answers with short-term credential checking: `credentials` maps the
    /// request's USERNAME to the key and participant, or nil if unknown.
    public func respond<Participant>(to request: UnsafeRawBufferPointer, from source: STUNAddress,
                                     into out: UnsafeMutableRawBufferPointer,
                                     credentials: (UnsafeRawBufferPointer) -> STUNCredential<Participant>?)
        throws(STUNError) -> BindingOutcome<Participant>
    {
        try respond(to: request, from: source, into: out, authenticate: true, credentials)
    }

    func respond<Participant>(to request: UnsafeRawBufferPointer, from source: STUNAddress,
                              into out: UnsafeMutableRawBufferPointer, authenticate: Bool,
                              _ lookup: (UnsafeRawBufferPointer) -> STUNCredential<Participant>?)
        throws(STUNError) -> BindingOutcome<Participant>
    {
        let m = try STUNMessageView(parsing: request)
        guard m.type.messageClass == .request else { throw .notARequest }
        // §14.7: a wrong FINGERPRINT means this is not (our) STUN: drop.
        if m.fingerprintOffset != nil, !m.verifyFingerprint() { throw .badFingerprint }
        let fingerprint = alwaysFingerprint || m.fingerprintOffset != nil

        guard m.type.method == STUN.bindingMethod else {
            return .errorResponse(length: try error(400, "Bad Request", m, out, fingerprint, key: nil), code: 400)
        }

        var credential: STUNCredential<Participant>?
        var sha256 = false
        if authenticate {
            // §9.1.3: both an integrity attribute and USERNAME are required.
            let hasIntegrity = m.messageIntegrityOffset != nil || m.messageIntegritySHA256Offset != nil
            guard hasIntegrity, let username = m.username else {
                return .errorResponse(length: try error(400, "Bad Request", m, out, fingerprint, key: nil), code: 400)
            }
            guard let c = lookup(username) else {
                return .errorResponse(length: try error(401, "Unauthorized", m, out, fingerprint, key: nil), code: 401)
            }
            // Prefer SHA-256 when the client sent it (§9.1.3).
            sha256 = m.messageIntegritySHA256Offset != nil
            let ok = c.key.withUnsafeBytes { k in
                sha256 ? m.verifyMessageIntegritySHA256(key: k) : m.verifyMessageIntegrity(key: k)
            }
            guard ok else {
                return .errorResponse(length: try error(401, "Unauthorized", m, out, fingerprint, key: nil), code: 401)
            }
            credential = c
        }

        // §6.3.1: unknown comprehension-required attributes → 420 (after authentication).
        if m.hasUnknownRequiredAttributes {
            let n = try error(420, "Unknown Attribute", m, out, fingerprint, key: credential?.key, sha256: sha256)
            return .errorResponse(length: n, code: 420)
        }

        var w = try STUNMessageWriter(into: out, type: .bindingSuccess, transactionID: m.transactionID)
        try w.appendXORMappedAddress(source)
        try finish(&w, key: credential?.key, sha256: sha256, fingerprint: fingerprint)
        return .success(length: w.count, participant: credential?.participant)
    }

    private func finish(_ w: inout STUNMessageWriter, key: [UInt8]?, sha256: Bool, fingerprint: Bool) throws(STUNError) {
        if let s = software { try w.append(.software, bytes: s) }
        if let k = key { try w.appendMessageIntegrity(key: k, sha256: sha256) }
        if fingerprint { try w.appendFingerprint() }
    }

    private func error(_ code: Int, _ reason: StaticString, _ m: STUNMessageView, _ out: UnsafeMutableRawBufferPointer,
                       _ fingerprint: Bool, key: [UInt8]?, sha256: Bool = false) throws(STUNError) -> Int {
        let type = STUNMessageType(method: m.type.method, messageClass: .errorResponse)
        var w = try STUNMessageWriter(into: out, type: type, transactionID: m.transactionID)
        try w.appendErrorCode(code, reason: reason)
        if code == 420 { try w.appendUnknownAttributes(of: m) }
        try finish(&w, key: key, sha256: sha256, fingerprint: fingerprint)
        return w.count
    }
}
