/// SDP (RFC 8866) as WebRTC peers write it (RFC 8829 JSEP): a session part
/// and media sections, each a list of lines `x=value`. Parsed into lines
/// kept in order, with the attributes WebRTC needs read out. Limits are
/// enforced while parsing (size, lines, sections); anything malformed
/// throws `SDPError` with a reason meant for the peer.
public struct SessionDescription: Sendable, Equatable {
    /// The most bytes a description may have.
    public static let maxBytes = 64 * 1024
    /// The most media sections (`m=` lines).
    public static let maxMediaSections = 32
    /// The most lines in all.
    public static let maxLines = 2000

    /// Session-level attributes (`a=name[:value]`), in order.
    public var attributes: [SDPAttribute] = []
    public var media: [MediaSection] = []

    public init() {}

    /// Parses `text` (lines ending in CRLF or LF).
    public init(parsing text: String) throws(SDPError) {
        guard text.utf8.count <= Self.maxBytes else { throw SDPError("the SDP has more than \(Self.maxBytes) bytes") }
        var lines = 0
        var sawVersion = false
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            var line = Substring(raw)
            if line.hasSuffix("\r") { line = line.dropLast() }
            if line.isEmpty { continue }
            lines += 1
            guard lines <= Self.maxLines else { throw SDPError("the SDP has more than \(Self.maxLines) lines") }
            guard line.utf8.count >= 2, line.utf8[line.utf8.index(after: line.utf8.startIndex)] == UInt8(ascii: "=") else {
                throw SDPError("line \(lines) is not type=value")
            }
            let type = line.first!
            let value = line.dropFirst(2)
            if !sawVersion {
                guard type == "v", value == "0" else { throw SDPError("an SDP starts with v=0") }
                sawVersion = true
                continue
            }
            switch type {
            case "m":
                guard media.count < Self.maxMediaSections else { throw SDPError("more than \(Self.maxMediaSections) media sections") }
                media.append(try MediaSection(mLine: value))
            case "a":
                let a = SDPAttribute(value)
                if media.isEmpty { attributes.append(a) } else { media[media.count - 1].attributes.append(a) }
            case "c":
                if !media.isEmpty { media[media.count - 1].connection = String(value) }
            default:
                continue // o, s, t, b, i, u, e, p, z, k, r: not needed
            }
        }
        guard sawVersion else { throw SDPError("empty SDP") }
    }

    /// The value of the first session-level attribute `name`.
    public func attribute(_ name: String) -> String? { attributes.first { $0.name == name }?.value }
}

/// One `a=` line: `name` and the text after the first ':' (nil for a flag).
public struct SDPAttribute: Sendable, Equatable {
    public var name: String
    public var value: String?

    public init(name: String, value: String? = nil) {
        self.name = name
        self.value = value
    }

    init(_ text: Substring) {
        if let colon = text.firstIndex(of: ":") {
            name = String(text[..<colon])
            value = String(text[text.index(after: colon)...])
        } else {
            name = String(text)
            value = nil
        }
    }

    public var line: String { value.map { "a=\(name):\($0)" } ?? "a=\(name)" }
}

/// One media section: `m=kind port proto formats…` and its attributes.
public struct MediaSection: Sendable, Equatable {
    /// `audio`, `video`, `application`, …
    public var kind: String
    public var port: Int
    public var proto: String
    /// Payload types (RTP) or the format tokens (`webrtc-datachannel`).
    public var formats: [String]
    public var connection: String?
    public var attributes: [SDPAttribute] = []

    init(mLine value: Substring) throws(SDPError) {
        let parts = value.split(separator: " ")
        guard parts.count >= 3 else { throw SDPError("m= needs kind, port, protocol and formats") }
        kind = String(parts[0])
        let portText = parts[1].split(separator: "/").first ?? ""
        guard let p = Int(portText), (0...65535).contains(p) else { throw SDPError("m=\(parts[0]) has a bad port") }
        port = p
        proto = String(parts[2])
        formats = parts.dropFirst(3).map(String.init)
        guard formats.count <= 64 else { throw SDPError("m=\(kind) lists more than 64 formats") }
    }

    public func attribute(_ name: String) -> String? { attributes.first { $0.name == name }?.value }
    public func has(_ name: String) -> Bool { attributes.contains { $0.name == name } }
    public func all(_ name: String) -> [String] { attributes.compactMap { $0.name == name ? $0.value : nil } }

    /// `a=mid`.
    public var mid: String? { attribute("mid") }

    /// The direction attribute (sendrecv when absent, RFC 8866 §6.7).
    public var direction: Direction {
        for a in attributes {
            if let d = Direction(rawValue: a.name) { return d }
        }
        return .sendrecv
    }

    /// Codecs of an RTP section, in the section's order of preference.
    public var codecs: [Codec] {
        var out: [Codec] = []
        let maps = all("rtpmap"), fmtps = all("fmtp"), fbs = all("rtcp-fb")
        for f in formats {
            guard let pt = UInt8(f), pt < 128 else { continue }
            guard let map = maps.first(where: { $0.hasPrefix("\(f) ") }) else { continue }
            let enc = map.dropFirst(f.count + 1).split(separator: "/")
            guard enc.count >= 2, let rate = Int(enc[1]), rate > 0 else { continue }
            let channels = enc.count > 2 ? Int(enc[2]) ?? 1 : 1
            let fmtp = fmtps.first { $0.hasPrefix("\(f) ") }.map { String($0.dropFirst(f.count + 1)) }
            let feedback = fbs.filter { $0.hasPrefix("\(f) ") || $0.hasPrefix("* ") }.map { String($0.drop { $0 != " " }.dropFirst()) }
            out.append(Codec(payloadType: pt, name: String(enc[0]), clockRate: rate, channels: channels, fmtp: fmtp, feedback: feedback))
        }
        return out
    }

    /// The SSRCs the sender announced (`a=ssrc:`), without the retransmission
    /// (and FEC) SSRCs of `a=ssrc-group:FID`/`FEC-FR` lines, in order.
    public var mediaSSRCs: [UInt32] {
        var secondary = Set<UInt32>()
        for g in all("ssrc-group") {
            let parts = g.split(separator: " ")
            if parts.count >= 3 { for s in parts.dropFirst(2) { if let v = UInt32(s) { secondary.insert(v) } } }
        }
        var out: [UInt32] = []
        for s in all("ssrc") {
            guard let id = s.split(separator: " ").first.flatMap({ UInt32($0) }), !secondary.contains(id), !out.contains(id) else { continue }
            out.append(id)
        }
        return out
    }
}

/// Media direction (RFC 8866 §6.7).
public enum Direction: String, Sendable {
    case sendrecv, sendonly, recvonly, inactive

    /// What the answerer says to an offer of `self` (RFC 3264 §6.1), given what it can do.
    public func answer(canSend: Bool, canReceive: Bool) -> Direction {
        let send = canSend && (self == .sendrecv || self == .recvonly)
        let receive = canReceive && (self == .sendrecv || self == .sendonly)
        switch (send, receive) {
        case (true, true): return .sendrecv
        case (true, false): return .sendonly
        case (false, true): return .recvonly
        case (false, false): return .inactive
        }
    }

    /// Whether the side that wrote it sends.
    public var sends: Bool { self == .sendrecv || self == .sendonly }
}

/// One codec of an m-line (`a=rtpmap`, `a=fmtp`, `a=rtcp-fb`).
public struct Codec: Sendable, Equatable {
    public var payloadType: UInt8
    public var name: String
    public var clockRate: Int
    public var channels: Int
    public var fmtp: String?
    public var feedback: [String]
}

/// A malformed or unacceptable SDP: `reason` is for the peer.
public struct SDPError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
