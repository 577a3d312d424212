import Foundation
import ParleyCore
import ParleySRTP

/// What `parley load media` runs: how many synthetic participants, what
/// they send, for how long, and what counts as a pass.
public struct MediaLoadOptions: Sendable {
    /// `wss://host:port` (or `ws://` against `serve --insecure`).
    public var url = "wss://127.0.0.1:7700"
    public var rooms = 1
    public var perRoom = 2
    /// Publishers per room, the first participants of each room; nil: all.
    public var publishersPerRoom: Int?
    /// How long media flows once the last participant has started.
    public var duration: Duration = .seconds(10)
    /// Participants start evenly spread over this time.
    public var ramp: Duration = .zero
    /// Publishers send an Opus track (real libopus frames of a tone, 20 ms).
    public var audio = true
    /// Publishers send a video track too.
    public var video: VideoProfile?
    public var suite: SRTPSuite = .default
    /// Signing secret to mint tokens with (the server's DATA-DIR/secret).
    public var secret: [UInt8]?
    /// Tokens to use instead of minting, one per participant (their `sub`s
    /// must differ); each joins its token's room, and participant `i` of the
    /// file publishes when `i mod per-room` < publishers (with `pub` in the token).
    public var tokens: [String] = []
    /// Accept any server certificate (the server's is self-signed).
    public var insecure = false
    /// SHA-256 fingerprint the server certificate must have.
    public var fingerprint: String?
    /// Local IP addresses to spread participants over (signalling and media
    /// sockets), round-robin; empty: the kernel's choice.
    public var bind: [String] = []
    /// Event loops (threads) of the generator.
    public var loops = 1
    /// Send media to this address instead of the one `join` names (a
    /// forwarding proxy on the path, e.g. one that drops packets).
    public var mediaVia: String?
    /// Room names are `PREFIX-N`; participants `PREFIX-N-M`.
    public var roomPrefix = "load"
    /// Pass/fail limits; nil: not checked.
    public var maxLoss: Double?
    public var maxP99: Duration?
    public var maxJoin: Duration?
    /// Most participants a run may start (a bound on what one command asks for).
    public static let maxParticipants = 100_000

    public init() {}

    public var participants: Int { rooms * perRoom }
    public var publishers: Int { min(perRoom, publishersPerRoom ?? perRoom) }

    /// The options in a report (no secret, no tokens).
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "url": .string(url), "rooms": JSONValue(rooms), "perRoom": JSONValue(perRoom),
            "publishersPerRoom": JSONValue(publishers), "durationSeconds": .number(duration.seconds),
            "rampSeconds": .number(ramp.seconds), "audio": .bool(audio), "suite": .string(suite.sdesName),
            "loops": JSONValue(loops), "bind": .array(bind.map { .string($0) }),
        ]
        if let v = video { o["video"] = .string(v.description) }
        if let m = maxLoss { o["maxLossPercent"] = .number(m * 100) }
        if let m = maxP99 { o["maxP99Ms"] = .number(m.seconds * 1000) }
        if let m = maxJoin { o["maxJoinMs"] = .number(m.seconds * 1000) }
        return .object(o)
    }
}

/// Video as bitrate and frame rate (`1.5mbps@30`), with a keyframe every
/// `keyframeInterval` four times the size of the other frames (the
/// average stays at the bitrate).
public struct VideoProfile: Sendable, Equatable, CustomStringConvertible {
    public var bitsPerSecond: Int
    public var framesPerSecond: Int
    public var keyframeInterval: Duration = .seconds(2)

    public init(bitsPerSecond: Int, framesPerSecond: Int) {
        self.bitsPerSecond = bitsPerSecond
        self.framesPerSecond = framesPerSecond
    }

    /// Parses `RATE@FPS`: RATE in bps with an optional k/m suffix and an
    /// optional `bps` (`1.5mbps`, `800k`, `2m@25`); FPS 1-240 (default 30).
    public init?(_ text: String) {
        let parts = text.lowercased().split(separator: "@", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return nil }
        var rate = String(parts[0])
        if rate.hasSuffix("bps") { rate.removeLast(3) }
        var scale = 1.0
        if rate.hasSuffix("k") { scale = 1e3; rate.removeLast() } else if rate.hasSuffix("m") { scale = 1e6; rate.removeLast() }
        guard let r = Double(rate), r > 0 else { return nil }
        let bps = Int(r * scale)
        let fps = parts.count == 2 ? Int(parts[1]) : 30
        guard let fps, (1...240).contains(fps), (10_000...1_000_000_000).contains(bps) else { return nil }
        self.init(bitsPerSecond: bps, framesPerSecond: fps)
    }

    public var description: String {
        bitsPerSecond % 1_000_000 == 0 ? "\(bitsPerSecond / 1_000_000)mbps@\(framesPerSecond)"
            : bitsPerSecond >= 1_000_000 ? "\(Double(bitsPerSecond) / 1e6)mbps@\(framesPerSecond)" : "\(bitsPerSecond / 1000)kbps@\(framesPerSecond)"
    }

    /// Frames per keyframe interval (at least 1).
    var framesPerKeyframe: Int { max(1, Int(keyframeInterval.seconds * Double(framesPerSecond))) }
    /// Bytes of a delta frame and of a keyframe (4×), keeping the average rate.
    var frameBytes: (delta: Int, key: Int) {
        let n = framesPerKeyframe
        let budget = Double(bitsPerSecond) / 8 * Double(n) / Double(framesPerSecond)
        let delta = max(1, Int(budget / Double(n + 3)))
        return (delta, 4 * delta)
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// Parses `90s`, `500ms`, `2m`, `1m30s`, or a bare number of seconds.
    static func parse(_ text: String) -> Duration? {
        if let s = Double(text), s >= 0 { return .milliseconds(Int64(s * 1000)) }
        var total = 0.0
        var number = ""
        var chars = Array(text)
        var i = 0
        guard !chars.isEmpty else { return nil }
        chars.append(" ")
        while i < chars.count - 1 {
            let c = chars[i]
            if c.isNumber || c == "." { number.append(c); i += 1; continue }
            guard let v = Double(number) else { return nil }
            number = ""
            if c == "m" && chars[i + 1] == "s" { total += v / 1000; i += 2; continue }
            switch c {
            case "h": total += v * 3600
            case "m": total += v * 60
            case "s": total += v
            default: return nil
            }
            i += 1
        }
        guard number.isEmpty, total >= 0 else { return nil }
        return .milliseconds(Int64(total * 1000))
    }
}

/// Parses `0.5%` (or a fraction, `0.005`) into a fraction.
func parseFraction(_ text: String) -> Double? {
    if text.hasSuffix("%") {
        guard let v = Double(text.dropLast()), v >= 0, v <= 100 else { return nil }
        return v / 100
    }
    guard let v = Double(text), v >= 0, v <= 1 else { return nil }
    return v
}

public enum LoadArgumentError: Error, CustomStringConvertible {
    case bad(String)
    public var description: String { if case .bad(let s) = self { return s }; return "" }
}

extension MediaLoadOptions {
    /// The flags `parley load media` takes (and a scenario file's keys).
    public static let valueFlags: Set<String> = [
        "url", "rooms", "per-room", "publishers-per-room", "duration", "ramp", "audio", "video", "suite",
        "secret-file", "token-file", "fingerprint", "bind", "loops", "room-prefix", "max-loss", "max-p99", "max-join",
        "keyframe-interval", "media-via",
    ]
    public static let switchFlags: Set<String> = ["insecure", "no-audio"]

    /// Applies one flag's value (from the command line or a scenario file).
    /// Files named (`secret-file`, `token-file`) are read here.
    public mutating func apply(_ name: String, _ value: String) throws(LoadArgumentError) {
        func int(_ range: ClosedRange<Int>) throws(LoadArgumentError) -> Int {
            guard let v = Int(value), range.contains(v) else { throw .bad("--\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got \"\(value)\"") }
            return v
        }
        func parsedDuration() throws(LoadArgumentError) -> Duration {
            guard let d = Duration.parse(value) else { throw .bad("--\(name) must be a duration (90s, 500ms, 2m), got \"\(value)\"") }
            return d
        }
        switch name {
        case "url":
            guard value.hasPrefix("ws://") || value.hasPrefix("wss://") else { throw .bad("--url must be ws:// or wss://, got \"\(value)\"") }
            url = value
        case "rooms": rooms = try int(1...Self.maxParticipants)
        case "per-room": perRoom = try int(1...10_000)
        case "publishers-per-room": publishersPerRoom = try int(0...10_000)
        case "duration": duration = try parsedDuration()
        case "ramp": ramp = try parsedDuration()
        case "keyframe-interval":
            let d = try parsedDuration()
            guard d > .zero else { throw .bad("--keyframe-interval must be positive") }
            if video != nil { video!.keyframeInterval = d }
        case "audio":
            guard value == "opus" || value == "none" else { throw .bad("--audio takes opus or none, got \"\(value)\"") }
            audio = value == "opus"
        case "video":
            if value == "none" { video = nil; return }
            guard let v = VideoProfile(value) else { throw .bad("--video takes RATE@FPS (1.5mbps@30, 800k@25), got \"\(value)\"") }
            video = v
        case "suite":
            switch value.uppercased() {
            case "CM", "AES_CM_128_HMAC_SHA1_80": suite = .aesCM128HmacSHA1_80
            case "GCM", "AEAD_AES_128_GCM": suite = .aeadAES128GCM
            default: throw .bad("--suite takes CM or GCM, got \"\(value)\"")
            }
        case "secret-file":
            guard let bytes = readSmallFile(value, limit: 64) else { throw .bad("cannot read --secret-file \(value)") }
            guard bytes.count == 32 else { throw .bad("--secret-file \(value) holds \(bytes.count) bytes, expected 32 (the server's DATA-DIR/secret)") }
            secret = bytes
        case "token-file":
            guard let bytes = readSmallFile(value, limit: 64 << 20) else { throw .bad("cannot read --token-file \(value)") }
            tokens = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        case "fingerprint": fingerprint = value
        case "media-via":
            guard SocketAddress(value) != nil else { throw .bad("--media-via takes IP:PORT, got \"\(value)\"") }
            mediaVia = value
        case "bind":
            var list: [String] = []
            for item in value.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                // A range of IPv4 addresses: 127.0.1.1-127.0.1.100.
                let ends = item.split(separator: "-").map(String.init)
                if ends.count == 2, let a = ipv4Number(ends[0]), let b = ipv4Number(ends[1]), a <= b, b - a < 4096 {
                    for n in a...b { list.append("\(n >> 24).\(n >> 16 & 255).\(n >> 8 & 255).\(n & 255)") }
                    continue
                }
                guard SocketAddress(ip: item, port: 0) != nil else { throw .bad("--bind takes IP addresses or ranges A-B, got \"\(item)\"") }
                list.append(item)
            }
            guard list.count <= 4096 else { throw .bad("--bind: at most 4096 addresses") }
            bind = list
        case "loops": loops = try int(1...256)
        case "room-prefix":
            guard !value.isEmpty, value.utf8.count <= 64 else { throw .bad("--room-prefix must be 1 to 64 bytes") }
            roomPrefix = value
        case "max-loss":
            guard let f = parseFraction(value) else { throw .bad("--max-loss takes a percentage (0.5%), got \"\(value)\"") }
            maxLoss = f
        case "max-p99": maxP99 = try parsedDuration()
        case "max-join": maxJoin = try parsedDuration()
        case "insecure": insecure = true
        case "no-audio": audio = false
        default: throw .bad("unknown option --\(name)")
        }
    }

    /// Checks what no single flag can: a way to get tokens, the count bound.
    public func validate() throws(LoadArgumentError) {
        guard participants <= Self.maxParticipants else { throw .bad("at most \(Self.maxParticipants) participants (rooms × per-room)") }
        if secret == nil && tokens.isEmpty { throw .bad("--secret-file or --token-file is required") }
        if secret == nil && tokens.count < participants {
            throw .bad("--token-file holds \(tokens.count) tokens for \(participants) participants")
        }
        if url.hasPrefix("wss://") && !insecure && fingerprint == nil {
            throw .bad("wss:// needs --insecure or --fingerprint SHA256 (the server's certificate is self-signed)")
        }
        if !audio && video == nil && publishers > 0 { throw .bad("publishers need --audio opus or --video RATE@FPS") }
    }
}

/// A dotted IPv4 address as a number.
func ipv4Number(_ s: String) -> UInt32? {
    let p = s.split(separator: ".", omittingEmptySubsequences: false).compactMap { UInt32($0) }
    guard p.count == 4, p.allSatisfy({ $0 < 256 }) else { return nil }
    return p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]
}

/// The whole file when it is at most `limit` bytes; nil otherwise.
func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
    guard let attrs = try? FileManager.default.attributesOfItem(atPath: path),
          let size = attrs[.size] as? NSNumber, size.intValue <= limit,
          let data = FileManager.default.contents(atPath: path) else { return nil }
    return [UInt8](data)
}
