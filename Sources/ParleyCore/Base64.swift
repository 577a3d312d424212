import Foundation

/// Base64 (RFC 4648 §4) and base64url without padding (§5), strict.
public enum Base64 {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Strict decode: padding required, no whitespace, canonical trailing bits.
    public static func decode(_ string: String) -> [UInt8]? {
        guard let data = Data(base64Encoded: string) else { return nil }
        let bytes = [UInt8](data)
        // Reject non-canonical encodings (stray bits in the last character).
        return encode(bytes) == string ? bytes : nil
    }

    public static func encodeURL(_ bytes: [UInt8]) -> String {
        var s = encode(bytes)
        while s.last == "=" { s.removeLast() }
        return String(s.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }

    /// Decodes unpadded base64url; nil on any character outside the alphabet
    /// or a non-canonical encoding.
    public static func decodeURL<S: StringProtocol>(_ string: S) -> [UInt8]? {
        var std = ""
        std.reserveCapacity(string.utf8.count + 3)
        for c in string.unicodeScalars {
            switch c {
            case "A"..."Z", "a"..."z", "0"..."9": std.unicodeScalars.append(c)
            case "-": std.append("+")
            case "_": std.append("/")
            default: return nil
            }
        }
        switch std.utf8.count % 4 {
        case 1: return nil
        case 2: std += "=="
        case 3: std += "="
        default: break
        }
        return decode(std)
    }
}
