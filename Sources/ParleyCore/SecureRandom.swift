/// Bytes from the system CSPRNG (getrandom(2), through
/// `SystemRandomNumberGenerator`, which Swift documents as cryptographically
/// secure): secrets, WebSocket masking keys, STUN transaction ids.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &g) }
    }
}
