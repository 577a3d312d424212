import ParleyCore

/// An origin-form request target (`/path?query`, RFC 9112 §3.2.1) split
/// into its percent-decoded path and query parameters.
public struct HTTPTarget: Sendable {
    /// The decoded path, always starting with "/".
    public var path: String
    /// The raw query (after "?", before any "#"), undecoded; nil when absent.
    public var rawQuery: String?
    /// Decoded query parameters in order (`+` is a space, as in HTML forms).
    public var query: [(name: String, value: String)]

    /// Returns nil when `target` is not origin-form, has a malformed
    /// percent-escape, or decodes to invalid UTF-8 or a NUL byte.
    public init?(_ target: String) {
        var pathPart = Substring(target)
        if let hash = pathPart.firstIndex(of: "#") { pathPart = pathPart[..<hash] }
        var queryPart: Substring?
        if let q = pathPart.firstIndex(of: "?") {
            queryPart = pathPart[pathPart.index(after: q)...]
            pathPart = pathPart[..<q]
        }
        guard pathPart.first == "/", let path = HTTPTarget.percentDecode(pathPart, plusIsSpace: false) else {
            return nil
        }
        self.path = path
        self.rawQuery = queryPart.map(String.init)
        var params: [(name: String, value: String)] = []
        if let queryPart {
            for pair in queryPart.split(separator: "&", omittingEmptySubsequences: true) {
                let name: Substring, value: Substring
                if let eq = pair.firstIndex(of: "=") {
                    name = pair[..<eq]
                    value = pair[pair.index(after: eq)...]
                } else {
                    name = pair
                    value = ""
                }
                guard let n = HTTPTarget.percentDecode(name, plusIsSpace: true),
                      let v = HTTPTarget.percentDecode(value, plusIsSpace: true) else { return nil }
                params.append((name: n, value: v))
            }
        }
        self.query = params
    }

    /// The first value of query parameter `name`.
    public func queryValue(_ name: String) -> String? {
        query.first { $0.name == name }?.value
    }

    /// Decodes `%XX` escapes (and `+` when `plusIsSpace`). Nil on a bad
    /// escape, invalid UTF-8, or an encoded NUL.
    public static func percentDecode<S: StringProtocol>(_ s: S, plusIsSpace: Bool) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            switch b {
            case UInt8(ascii: "%"):
                guard let h = it.next(), let l = it.next(), let hv = Hex.digit(h), let lv = Hex.digit(l) else {
                    return nil
                }
                let v = hv << 4 | lv
                if v == 0 { return nil }
                out.append(v)
            case UInt8(ascii: "+") where plusIsSpace:
                out.append(UInt8(ascii: " "))
            default:
                out.append(b)
            }
        }
        guard UTF8Validator.isValid(out[...]) else { return nil }
        return String(decoding: out, as: UTF8.self)
    }
}
