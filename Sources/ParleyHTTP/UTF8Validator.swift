/// A strict, incremental UTF-8 validator (RFC 3629): rejects overlong
/// forms, surrogates (U+D800–U+DFFF) and code points above U+10FFFF.
/// WebSocket text messages must be checked this way (RFC 6455 §8.1), and
/// fragments may split a code point, so state carries across `feed` calls.
public struct UTF8Validator: Sendable {
    /// Continuation bytes still expected for the current code point.
    private var needed = 0
    /// Allowed range for the next continuation byte (tightened after lead bytes
    /// E0, ED, F0, F4 to exclude overlongs, surrogates and > U+10FFFF).
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF
    public private(set) var failed = false

    public init() {}

    /// Validates more bytes; returns false once the input is invalid.
    @discardableResult
    public mutating func feed<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        if failed { return false }
        for b in bytes {
            if needed == 0 {
                switch b {
                case 0x00...0x7F: continue
                case 0xC2...0xDF: needed = 1
                case 0xE0: needed = 2; lower = 0xA0
                case 0xE1...0xEC, 0xEE...0xEF: needed = 2
                case 0xED: needed = 2; upper = 0x9F
                case 0xF0: needed = 3; lower = 0x90
                case 0xF1...0xF3: needed = 3
                case 0xF4: needed = 3; upper = 0x8F
                default: failed = true; return false
                }
            } else {
                guard b >= lower && b <= upper else { failed = true; return false }
                lower = 0x80
                upper = 0xBF
                needed -= 1
            }
        }
        return true
    }

    /// True when everything fed so far is valid and no code point is cut off.
    public var isComplete: Bool { !failed && needed == 0 }

    /// Validates a whole buffer at once.
    public static func isValid<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        var v = UTF8Validator()
        return v.feed(bytes) && v.isComplete
    }
}
