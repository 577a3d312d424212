/// `HOST:PORT` or `[IPv6]:PORT`, as config files, flags and URLs write an endpoint.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) { self.host = host; self.port = port }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Why a string is not `HOST:PORT`.
    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ s: String) throws(ParseError) -> HostPort {
        var host: Substring, portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":") else {
                throw ParseError(description: "expected [IPv6]:PORT, got \"\(s)\"")
            }
            host = s[s.index(after: s.startIndex)..<close]
            portText = s[s.index(close, offsetBy: 2)...]
        } else {
            guard let colon = s.lastIndex(of: ":") else { throw ParseError(description: "expected HOST:PORT, got \"\(s)\"") }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
        }
        guard !host.isEmpty else { throw ParseError(description: "missing host in \"\(s)\"") }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ParseError(description: "port must be 0-65535, got \"\(portText)\"")
        }
        return HostPort(host: String(host), port: port)
    }

    /// The socket address to bind or reach (`localhost` means 127.0.0.1;
    /// other names are not resolved): nil for a name.
    public var socketAddress: SocketAddress? {
        SocketAddress(ip: host == "localhost" ? "127.0.0.1" : host, port: UInt16(port))
    }
}
