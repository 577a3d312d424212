/// TLS configuration shared by connections (phase 2: OpenSSL). Placeholder
/// until the OpenSSL layer lands; ``makeLayer()`` is called per connection.
public final class TLSContext: @unchecked Sendable {
    func makeLayer() -> TCPStreamLayer? { nil }
}
