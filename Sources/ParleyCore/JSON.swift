
/// A JSON value (RFC 8259) for the signalling protocol's control messages.
///
/// Parley parses and writes its own JSON here rather than going through
/// Foundation so that numbers and booleans stay distinct on Linux, limits are
/// enforced while parsing, and output is deterministic (object keys sorted),
/// which keeps protocol examples and tests stable. Control plane only; the
/// media path never sees JSON.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var doubleValue: Double? { if case .number(let d) = self { return d }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }

    /// The value as an integer when it is a number with no fractional part
    /// that fits in Int64 (JSON numbers above 2^53 lose precision).
    public var intValue: Int? {
        guard case .number(let d) = self, d == d.rounded(), abs(d) <= 9_007_199_254_740_992 else { return nil }
        return Int(d)
    }

    // MARK: Writing

    /// Compact JSON text with object keys sorted.
    public var serialized: String {
        var out = ""
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    public func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d): JSONValue.writeNumber(d, into: &out)
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, v)) in o.sorted(by: { $0.key < $1.key }).enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal (RFC 8259): `"` and `\` escaped,
    /// `\n` `\r` `\t` by name, other control characters as `\u00XX`,
    /// everything else (`/` and non-ASCII too) as it is. The one JSON string
    /// escaper: `serialized`, `JSONObjectWriter` and the logger all use it.
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { u in
            var run = 0 // start of the bytes not written yet
            for (i, c) in u.enumerated() where needsEscape(c) {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: u[run..<i]))
                run = i + 1
                out.append(UInt8(ascii: "\\"))
                switch c {
                case 0x22, 0x5C: out.append(c)
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                default:
                    let hex: StaticString = "0123456789abcdef"
                    out.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30, hex.utf8Start[Int(c >> 4)], hex.utf8Start[Int(c & 0xF)]])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: u[run...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `appendString` into a `String`: a string with nothing to escape (most)
    /// is appended whole, without going through bytes.
    public static func writeString(_ s: String, into out: inout String) {
        var copy = s
        if copy.withUTF8({ !$0.contains(where: needsEscape) }) {
            out += "\""
            out += s
            out += "\""
            return
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count + 16)
        appendString(s, to: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }

    @inline(__always) static func needsEscape(_ c: UInt8) -> Bool { c < 0x20 || c == 0x22 || c == 0x5C }

    static func writeNumber(_ d: Double, into out: inout String) {
        if d.isFinite && d == d.rounded() && abs(d) < 1e15 {
            out += String(Int64(d))
        } else if d.isFinite {
            out += String(d)
        } else {
            out += "null"
        }
    }

    // MARK: Parsing

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    /// Parses one JSON text. Nesting deeper than `maxDepth` is refused so a
    /// hostile message cannot exhaust the stack, and an object that names a
    /// key twice is refused (at the second one) rather than one of the
    /// values silently winning.
    public static func parse(_ text: String, maxDepth: Int = 32) throws(ParseError) -> JSONValue {
        // Read in place from the string's UTF-8 (no copy of the text).
        var text = text
        let result = text.withUTF8 { bytes -> Result<JSONValue, ParseError> in
            var p = Parser(bytes: bytes, maxDepth: maxDepth)
            do throws(ParseError) {
                p.skipSpace()
                let v = try p.value(depth: 0)
                p.skipSpace()
                guard p.i == p.bytes.count else { throw p.fail("trailing characters") }
                return .success(v)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        let maxDepth: Int
        var i = 0

        init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) { self.bytes = bytes; self.maxDepth = maxDepth }

        func fail(_ reason: String) -> ParseError { ParseError(offset: i, reason: reason) }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func literal(_ word: StaticString, _ v: JSONValue) throws(ParseError) -> JSONValue {
            let n = word.utf8CodeUnitCount
            guard i + n <= bytes.count else { throw fail("unexpected token") }
            for k in 0..<n where bytes[i + k] != word.utf8Start[k] { throw fail("unexpected token") }
            i += n
            return v
        }

        mutating func value(depth: Int) throws(ParseError) -> JSONValue {
            guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
            guard i < bytes.count else { throw fail("unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object([:]) }
                // Room for a message's fields at once, rather than growing (and rehashing) 1, 2, 4, 8.
                var o = [String: JSONValue](minimumCapacity: 8)
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let keyStart = i
                    let k = try string()
                    // RFC 8259 §4 leaves duplicate names undefined, so two
                    // readers may disagree on what the message says: refuse.
                    guard o[k] == nil else {
                        var quoted = ""
                        JSONValue.writeString(k, into: &quoted)
                        throw ParseError(offset: keyStart, reason: "duplicate key \(quoted)")
                    }
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    skipSpace()
                    o[k] = try value(depth: depth + 1)
                    skipSpace()
                    guard i < bytes.count else { throw fail("unexpected end") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1
                var a: [JSONValue] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    skipSpace()
                    a.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < bytes.count else { throw fail("unexpected end") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            default: return try number()
            }
        }

        mutating func number() throws(ParseError) -> JSONValue {
            let start = i
            func digits(_ p: inout Parser) -> Int {
                let s = p.i
                while p.i < p.bytes.count, p.bytes[p.i] >= 0x30, p.bytes[p.i] <= 0x39 { p.i += 1 }
                return p.i - s
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
            let intStart = i
            guard digits(&self) > 0 else { throw fail("unexpected token") }
            let intEnd = i
            if bytes[intStart] == 0x30, i - intStart > 1 { throw fail("leading zero") }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits(&self) > 0 else { throw fail("digits expected after '.'") }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits(&self) > 0 else { throw fail("digits expected in exponent") }
            }
            // An integer of up to 15 digits is exact as a Double: no text conversion.
            if i == intEnd, i - intStart <= 15 {
                var n: Int64 = 0
                for k in intStart..<i { n = n &* 10 &+ Int64(bytes[k] &- 0x30) }
                return .number(Double(start == intStart ? n : -n))
            }
            guard let d = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)) else { throw fail("bad number") }
            return .number(d)
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard i + 4 <= bytes.count else { throw fail("short \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                guard let d = Hex.digit(bytes[i]) else { throw fail("bad \\u escape") }
                v = v << 4 | UInt32(d)
                i += 1
            }
            return v
        }

        mutating func string() throws(ParseError) -> String {
            i += 1  // opening quote
            // Most strings have no escape: made from their bytes in one go.
            var j = i
            while j < bytes.count, bytes[j] != UInt8(ascii: "\""), bytes[j] != UInt8(ascii: "\\"), bytes[j] >= 0x20 { j += 1 }
            if j < bytes.count, bytes[j] == UInt8(ascii: "\"") {
                defer { i = j + 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[i..<j]), as: UTF8.self)
            }
            var runStart = i
            var raw: [UInt8] = []
            func flush(_ p: Parser, _ runStart: Int, into raw: inout [UInt8]) {
                raw.append(contentsOf: p.bytes[runStart..<p.i])
            }
            while true {
                guard i < bytes.count else { throw fail("unterminated string") }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") {
                    flush(self, runStart, into: &raw)
                    i += 1
                    break
                }
                if c < 0x20 { throw fail("control character in string") }
                if c == UInt8(ascii: "\\") {
                    flush(self, runStart, into: &raw)
                    i += 1
                    guard i < bytes.count else { throw fail("unterminated escape") }
                    let e = bytes[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""): raw.append(0x22)
                    case UInt8(ascii: "\\"): raw.append(0x5C)
                    case UInt8(ascii: "/"): raw.append(0x2F)
                    case UInt8(ascii: "b"): raw.append(0x08)
                    case UInt8(ascii: "f"): raw.append(0x0C)
                    case UInt8(ascii: "n"): raw.append(0x0A)
                    case UInt8(ascii: "r"): raw.append(0x0D)
                    case UInt8(ascii: "t"): raw.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800...0xDBFF).contains(scalar) {
                            guard i + 2 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                                throw fail("lone surrogate")
                            }
                            i += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw fail("bad surrogate pair") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00...0xDFFF).contains(scalar) {
                            throw fail("lone surrogate")
                        }
                        guard let u = Unicode.Scalar(scalar) else { throw fail("bad code point") }
                        raw.append(contentsOf: Array(String(Character(u)).utf8))
                    default: throw fail("bad escape")
                    }
                    runStart = i
                    continue
                }
                i += 1
            }
            // Input came from a Swift String, so raw is valid UTF-8.
            return String(decoding: raw, as: UTF8.self)
        }
    }
}

/// Writes one JSON object member by member, straight into its UTF-8: the
/// same bytes as building the `JSONValue.object` and taking `serialized`,
/// without the dictionary, the sort, the values' enum boxes or a `String`
/// append per piece. For messages written once per chat message
/// (chat.message, the `sent` reply, a receipt). The caller adds the members
/// in sorted key order, as `serialized` writes them (checked in debug
/// builds); keys are plain ASCII names that need no escape.
public struct JSONObjectWriter {
    private var out: [UInt8]
    #if DEBUG
    private var lastKey = ""
    #endif

    public init(capacity: Int = 256) {
        out = []
        out.reserveCapacity(capacity)
        out.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ k: StaticString) {
        #if DEBUG
        let key = k.description
        precondition(out.count == 1 || lastKey < key, "JSONObjectWriter: \"\(key)\" after \"\(lastKey)\": keys go in sorted order")
        precondition(!key.utf8.contains { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C || $0 >= 0x80 }, "JSONObjectWriter: a key needs no escape")
        lastKey = key
        #endif
        if out.count > 1 { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    /// A string, escaped by `JSONValue.appendString`.
    public mutating func add(_ k: StaticString, _ v: String) {
        key(k)
        JSONValue.appendString(v, to: &out)
    }

    /// An integer, written as `JSONValue(Int(v))` is (through a Double).
    public mutating func add(_ k: StaticString, _ v: Int64) {
        key(k)
        guard v > -1_000_000_000_000_000, v < 1_000_000_000_000_000 else {
            var text = ""
            JSONValue.writeNumber(Double(v), into: &text)
            out.append(contentsOf: text.utf8)
            return
        }
        if v < 0 { out.append(UInt8(ascii: "-")) }
        var m = v.magnitude, digits = 1
        while m >= 10 { m /= 10; digits += 1 }
        let end = out.count + digits
        out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        m = v.magnitude
        for i in stride(from: end - 1, through: end - digits, by: -1) {
            out[i] = UInt8(truncatingIfNeeded: m % 10) &+ 0x30
            m /= 10
        }
    }

    public mutating func add(_ k: StaticString, _ v: Bool) {
        key(k)
        let word: StaticString = v ? "true" : "false"
        out.append(contentsOf: UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
    }

    public mutating func add(_ k: StaticString, _ v: JSONValue) {
        key(k)
        var text = ""
        v.write(into: &text)
        out.append(contentsOf: text.utf8)
    }

    /// The object's text; the writer is done.
    public consuming func finish() -> String {
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral v: String) { self = .string(v) }
    public init(integerLiteral v: Int) { self = .number(Double(v)) }
    public init(floatLiteral v: Double) { self = .number(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var o: [String: JSONValue] = [:]
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
    public init(_ i: Int) { self = .number(Double(i)) }
    public init(_ u: UInt32) { self = .number(Double(u)) }
}
