/// One rendition of the ladder: a resolution and an average bitrate.
public struct Rung: Sendable, Equatable, Codable {
    /// Directory and display name, e.g. `720p-3000k`.
    public var name: String
    public var width: Int
    public var height: Int
    /// Target average bitrate in bit/s.
    public var bitRate: Int

    public init(name: String, width: Int, height: Int, bitRate: Int) {
        self.name = name; self.width = width; self.height = height; self.bitRate = bitRate
    }

    /// Capped VBR: peak rate and VBV buffer relative to the average.
    public var maxRate: Int { bitRate * 11 / 10 }
    public var bufferSize: Int { bitRate * 2 }
}

/// The H.264 ladder of Apple's HLS Authoring Specification and the rules
/// that fit it to a source.
public enum Ladder {
    /// (height, kbit/s), for 16:9: 416×234 … 1920×1080.
    public static let apple: [(height: Int, kbps: Int)] = [
        (234, 145), (360, 365), (432, 730), (432, 1100), (540, 2000),
        (720, 3000), (720, 4500), (1080, 6000), (1080, 7800),
    ]

    public enum ParseError: Error, CustomStringConvertible {
        case bad(String)
        public var description: String {
            switch self { case .bad(let s): return s }
        }
    }

    /// Parses `1080p:6000k,720p:3000k,...` (also `1280x720:3000k`, `3M`, plain bit/s).
    /// Returns (height or nil, width or nil, bit/s) per rung, in the given order.
    public static func parse(_ spec: String) throws -> [(width: Int?, height: Int, bitRate: Int)] {
        var out: [(width: Int?, height: Int, bitRate: Int)] = []
        for part in spec.split(separator: ",", omittingEmptySubsequences: true) {
            let kv = part.split(separator: ":")
            guard kv.count == 2 else { throw ParseError.bad("--ladder: '\(part)' is not RESOLUTION:BITRATE (e.g. 720p:3000k)") }
            let res = kv[0].lowercased()
            var width: Int?
            var height: Int
            if res.hasSuffix("p"), let h = Int(res.dropLast()) {
                height = h
            } else if let x = res.firstIndex(of: "x"), let w = Int(res[..<x]), let h = Int(res[res.index(after: x)...]) {
                width = w; height = h
            } else {
                throw ParseError.bad("--ladder: bad resolution '\(kv[0])' (use 720p or 1280x720)")
            }
            let r = kv[1].lowercased()
            var rate: Int?
            if r.hasSuffix("k") { rate = Int(r.dropLast()).map { $0 * 1000 } }
            else if r.hasSuffix("m") { rate = Int(r.dropLast()).map { $0 * 1_000_000 } }
            else { rate = Int(r) }
            guard let bitRate = rate, bitRate >= 16_000, bitRate <= 200_000_000 else {
                throw ParseError.bad("--ladder: bad bitrate '\(kv[1])' (use e.g. 3000k)")
            }
            guard height >= 16, height <= 4320, (width ?? 16) >= 16 else {
                throw ParseError.bad("--ladder: resolution '\(kv[0])' out of range")
            }
            height -= height % 2
            out.append((width, height, bitRate))
        }
        guard !out.isEmpty else { throw ParseError.bad("--ladder: empty") }
        return out
    }

    /// Width for `height` keeping the source's display aspect ratio, even.
    static func width(forHeight h: Int, sourceWidth sw: Int, sourceHeight sh: Int) -> Int {
        let w = Int((Double(h) * Double(sw) / Double(sh)).rounded())
        return max(2, w - w % 2)
    }

    /// The ladder for a source: the Apple rungs (or `spec`) never above the
    /// source resolution, highest first. A source smaller than every rung
    /// gets one rung at its own size and the lowest bitrate.
    public static func pick(sourceWidth sw: Int, sourceHeight sh: Int, spec: String? = nil) throws -> [Rung] {
        var wanted: [(width: Int?, height: Int, bitRate: Int)]
        if let spec { wanted = try parse(spec) } else { wanted = apple.map { (nil, $0.height, $0.kbps * 1000) } }
        var rungs: [Rung] = []
        for w in wanted {
            guard w.height <= sh, (w.width ?? 0) <= sw else { continue }
            let width = w.width.map { $0 - $0 % 2 } ?? width(forHeight: w.height, sourceWidth: sw, sourceHeight: sh)
            let name = "\(w.height)p-\(w.bitRate / 1000)k"
            guard !rungs.contains(where: { $0.name == name }) else { continue }
            rungs.append(Rung(name: name, width: width, height: w.height, bitRate: w.bitRate))
        }
        if rungs.isEmpty {
            if spec != nil {
                throw ParseError.bad("--ladder: every rung is above the source resolution \(sw)x\(sh)")
            }
            let h = sh - sh % 2, wd = sw - sw % 2
            rungs = [Rung(name: "\(h)p-\(apple[0].kbps)k", width: wd, height: h, bitRate: apple[0].kbps * 1000)]
        }
        return rungs.sorted { ($0.height, $0.bitRate) > ($1.height, $1.bitRate) }
    }
}
