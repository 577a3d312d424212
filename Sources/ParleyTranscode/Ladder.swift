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
    /// (short side, kbit/s): 416×234 … 1920×1080 for 16:9, 234×416 … 1080×1920 for 9:16.
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
    /// Returns (width or nil, height, bit/s) per rung, in the given order;
    /// for `720p` the height is the short side (see `pick`).
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

    /// The long side for a short side `short`, keeping the source's aspect ratio, even.
    static func longSide(forShort short: Int, sourceShort ss: Int, sourceLong sl: Int) -> Int {
        let l = Int((Double(short) * Double(sl) / Double(ss)).rounded())
        return max(2, l - l % 2)
    }

    /// The ladder for a source: the Apple rungs (or `spec`) never above the
    /// source, highest first. A rung's `NNNp` is its short side, so a
    /// portrait 720×1280 source gets 720×1280, 540×960, … and stays
    /// portrait; the long side keeps the source's aspect ratio and is even.
    /// A `WxH` rung is turned to the source's orientation. A source smaller
    /// than every rung gets one rung at its own size and the lowest bitrate.
    public static func pick(sourceWidth sw: Int, sourceHeight sh: Int, spec: String? = nil) throws -> [Rung] {
        var wanted: [(width: Int?, height: Int, bitRate: Int)]
        if let spec { wanted = try parse(spec) } else { wanted = apple.map { (nil, $0.height, $0.kbps * 1000) } }
        let portrait = sh > sw
        let sourceShort = min(sw, sh), sourceLong = max(sw, sh)
        func oriented(short: Int, long: Int) -> (width: Int, height: Int) { portrait ? (short, long) : (long, short) }
        var rungs: [Rung] = []
        for w in wanted {
            let short: Int, long: Int
            if let width = w.width {
                short = min(width, w.height); long = max(width, w.height)
            } else {
                short = w.height; long = longSide(forShort: short, sourceShort: sourceShort, sourceLong: sourceLong)
            }
            guard short <= sourceShort, long <= sourceLong else { continue }  // never upscale
            let size = oriented(short: short - short % 2, long: long - long % 2)
            let name = "\(short - short % 2)p-\(w.bitRate / 1000)k"
            guard !rungs.contains(where: { $0.name == name }) else { continue }
            rungs.append(Rung(name: name, width: size.width, height: size.height, bitRate: w.bitRate))
        }
        if rungs.isEmpty {
            if spec != nil {
                throw ParseError.bad("--ladder: every rung is above the source resolution \(sw)x\(sh)")
            }
            let short = sourceShort - sourceShort % 2
            let size = oriented(short: short, long: sourceLong - sourceLong % 2)
            rungs = [Rung(name: "\(short)p-\(apple[0].kbps)k", width: size.width, height: size.height, bitRate: apple[0].kbps * 1000)]
        }
        return rungs.sorted { (min($0.width, $0.height), $0.bitRate) > (min($1.width, $1.height), $1.bitRate) }
    }
}
