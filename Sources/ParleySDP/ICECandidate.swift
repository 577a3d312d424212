/// One of the relay's host candidates, as an answer writes it (RFC 8839
/// §5.1): UDP, or TCP passive (RFC 6544: the peer connects, and every packet
/// goes RFC 4571-framed over the connection).
///
/// Priorities (RFC 8445 §5.1.2.1, RFC 6544 §4.2) make UDP win whenever both
/// work: all are host candidates (type preference 126); UDP has local
/// preference 65535 (IPv4) or 65534 (IPv6), TCP passive 2^13 × 4 + 8191
/// (IPv4) or one less (IPv6) (direction preference 4 for a passive host
/// candidate), so every UDP candidate outranks every TCP one.
public struct ICECandidate: Sendable, Equatable {
    public enum Transport: String, Sendable, CaseIterable { case udp, tcp }

    public var transport: Transport
    /// The IP clients reach (IPv4 or IPv6 text, no brackets).
    public var host: String
    public var port: Int

    public init(_ transport: Transport, host: String, port: Int) {
        self.transport = transport
        self.host = host
        self.port = port
    }

    public var isIPv6: Bool { host.contains(":") }

    /// RFC 8445 §5.1.2.1 priority, component 1.
    public var priority: UInt32 {
        let local: UInt32
        switch transport {
        case .udp: local = isIPv6 ? 65534 : 65535
        case .tcp: local = (1 << 13) * 4 + 8191 - (isIPv6 ? 1 : 0)
        }
        return (126 << 24) | (local << 8) | 255
    }

    /// Candidates of the same type, transport and address family share a foundation.
    public var foundation: String {
        switch (transport, isIPv6) {
        case (.udp, false): return "1"
        case (.tcp, false): return "2"
        case (.udp, true): return "3"
        case (.tcp, true): return "4"
        }
    }

    /// The attribute value after `a=`: `candidate:1 1 udp … typ host`, or `… tcp … typ host tcptype passive`.
    public var attribute: String {
        let base = "candidate:\(foundation) 1 \(transport.rawValue) \(priority) \(host) \(port) typ host"
        return transport == .tcp ? base + " tcptype passive" : base
    }
}
