import ParleyIO

/// TLS for the listener: the configured certificate, or a self-signed one in
/// DATA_DIR/tls. Waits on ParleyIO's TLS layer.
enum ServerTLS {
    static func context(config: ServerConfig) throws -> (TLSContext, [String]) {
        throw ServerFrontEnd.StartError("TLS is not available in this build yet; run with --insecure on a loopback address")
    }
}
