import ParleyIO

/// TLS for outbound signalling connections (`parley sdp`). Waits on ParleyIO's TLS layer.
enum ClientTLS {
    static func context(pinnedFingerprint: String?) throws -> TLSContext {
        throw SignallingClient.Failure("wss:// is not available in this build yet; use ws:// against serve --insecure")
    }
}
