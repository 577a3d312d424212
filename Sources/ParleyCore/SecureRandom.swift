/// Bytes from the system CSPRNG (getrandom(2), through
/// `SystemRandomNumberGenerator`, which Swift documents as cryptographically
/// secure): secrets, WebSocket masking keys, STUN transaction ids. Eight
/// bytes per draw (one getrandom call), not one: a client's masking key per
/// WebSocket frame is one system call, not four.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            var v = g.next()
            for _ in 0..<min(8, count - out.count) {
                out.append(UInt8(truncatingIfNeeded: v))
                v >>= 8
            }
        }
        return out
    }
}
