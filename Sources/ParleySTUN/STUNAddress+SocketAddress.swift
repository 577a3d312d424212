import ParleyCore

extension STUNAddress {
    /// The STUN form of a socket address (what XOR-MAPPED-ADDRESS carries).
    /// No allocation for IPv4.
    public init(_ a: SocketAddress) {
        if let v4 = a.ipv4NetworkOrder {
            self.init(ipv4: UInt32(bigEndian: v4), port: a.port)
        } else {
            let b = a.addressBytes
            var h: UInt64 = 0, l: UInt64 = 0
            for i in 0..<8 { h = h << 8 | UInt64(b[i]); l = l << 8 | UInt64(b[8 + i]) }
            self.init(ipv6High: h, low: l, port: a.port)
        }
    }
}
