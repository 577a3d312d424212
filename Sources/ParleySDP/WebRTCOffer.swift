/// A WebRTC peer's offer as Parley takes it (RFC 8829 §5.3 from the
/// answerer's side), and the answer Parley writes: ICE-lite with one host
/// candidate, DTLS `setup:passive` (Parley is the DTLS server), BUNDLE on
/// one transport, rtcp-mux, one codec per RTP section.
public struct WebRTCOffer: Sendable, Equatable {
    public var iceUfrag: String
    public var icePassword: String
    /// `a=fingerprint:sha-256 …` (the value after the hash name).
    public var fingerprint: String
    /// The offer's `a=setup` (`actpass` or `active`: the offerer is then the DTLS client).
    public var setup: String
    public var sections: [Section]

    /// One media section of the offer and what Parley makes of it.
    public struct Section: Sendable, Equatable {
        public var mid: String
        /// `audio`, `video` or another (rejected) kind.
        public var kind: String
        public var direction: Direction
        /// The codec Parley takes (the offer's most preferred one it supports); nil rejects the section.
        /// The peer sends with it (it comes first in the answer).
        public var codec: Codec?
        /// Every codec of the offer Parley forwards, `codec` first, then in the offer's order: the
        /// answer lists them all, so the peer can receive any of them (payload types are rewritten per
        /// subscriber to what it offered for the same codec).
        public var codecs: [Codec]
        /// The header extensions of the offer Parley answers (`a=extmap`), URI → id.
        public var extensions: [String: UInt8]
        /// Simulcast the peer sends (RFC 8853 `a=simulcast:send`, RFC 8851
        /// `a=rid … send`): the rids in the offer's order (the first of each
        /// alternative, at most `maxSimulcastLayers`); empty: one stream.
        public var rids: [String] = []
        /// The SSRCs the offerer sends with (its `a=ssrc`, without retransmission SSRCs).
        public var ssrcs: [UInt32]
        /// `a=msid` (stream and track id), if any.
        public var msid: String?
        /// The formats as offered (a rejected section echoes them).
        var formats: [String]
        var proto: String
    }

    /// Codecs Parley forwards (passthrough), by kind (the offer's order decides among them).
    /// H.264 only with `packetization-mode=1` (non-interleaved: what the relay's
    /// keyframe detection and recording read).
    public static let supportedCodecs: [String: [String]] = ["audio": ["opus"], "video": ["VP8", "VP9", "H264", "AV1"]]
    /// The RTCP feedback Parley answers (RFC 4585, RFC 5104; `transport-cc`:
    /// the relay sends transport-wide feedback; `goog-remb`: the relay sends
    /// REMB, draft-alvestrand-rmcat-remb, as a bitrate cap, answered only
    /// to a peer that does not offer transport-cc).
    public static let supportedFeedback: Set<String> = ["nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"]

    /// Header extension URIs (RFC 8285 `a=extmap`).
    public enum Extension {
        public static let mid = "urn:ietf:params:rtp-hdrext:sdes:mid"
        public static let absSendTime = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
        public static let transportWideCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
        public static let audioLevel = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
        public static let rid = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
        public static let repairedRid = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
    }
    /// The header extensions Parley answers, by kind.
    public static let supportedExtensions: [String: Set<String>] = [
        "audio": [Extension.mid, Extension.absSendTime, Extension.transportWideCC, Extension.audioLevel],
        "video": [Extension.mid, Extension.absSendTime, Extension.transportWideCC, Extension.rid, Extension.repairedRid],
    ]
    /// The most simulcast layers taken from one section (what browsers send).
    public static let maxSimulcastLayers = 3

    /// RFC 8851 §10: a rid is 1-16 letters, digits, '-' or '_' (Parley's bound).
    static func isRid(_ r: Substring) -> Bool {
        (1...16).contains(r.utf8.count) && r.utf8.allSatisfy { isICEChar($0) && $0 != 0x2B && $0 != 0x2F || $0 == 0x2D || $0 == 0x5F }
    }

    /// The rids a section sends, from `a=simulcast:send` (else its `a=rid:… send` lines).
    static func sendRids(_ m: MediaSection) -> [String] {
        let declared = m.all("rid").compactMap { v -> String? in
            let parts = v.split(separator: " ")
            return parts.count >= 2 && parts[1] == "send" && isRid(parts[0]) ? String(parts[0]) : nil
        }
        guard !declared.isEmpty else { return [] }
        var order: [String] = declared
        if let sim = m.attribute("simulcast") {
            let parts = sim.split(separator: " ")
            if parts.count >= 2, parts[0] == "send" {
                // "send q;h;f", alternatives "a,b", paused "~a": the first of each alternative list.
                order = parts[1].split(separator: ";").compactMap { alt in
                    alt.split(separator: ",").first.map { String($0.drop { $0 == "~" }) }
                }.filter { declared.contains($0) }
            }
        }
        var out: [String] = []
        for r in order where !out.contains(r) { out.append(r) }
        return Array(out.prefix(maxSimulcastLayers))
    }

    /// Whether a codec may be taken: H.264 needs packetization-mode=1 (RFC 6184 §6.3).
    static func acceptable(_ c: Codec) -> Bool {
        guard c.name.lowercased() == "h264" else { return true }
        return (c.fmtp ?? "").split(separator: ";").contains { String($0).trimmingCharacters(in: " ") == "packetization-mode=1" }
    }

    /// Whether the peer gets transport-wide feedback for this section (offered the extension and the feedback).
    public func transportCC(_ s: Section) -> Bool {
        s.extensions[Extension.transportWideCC] != nil && (s.codec?.feedback.contains("transport-cc") ?? false)
    }

    /// The ids the peer negotiated, over all its sections (BUNDLE: one id per URI on the transport).
    public var extensionIDs: [String: UInt8] {
        var out: [String: UInt8] = [:]
        for s in sections where s.codec != nil { out.merge(s.extensions) { a, _ in a } }
        return out
    }

    /// Checks an offer and picks a codec per section. Throws for what a
    /// WebRTC offer must have: ICE credentials, a SHA-256 fingerprint, a
    /// setup Parley can answer passive to, rtcp-mux, a mid per section.
    public init(_ sdp: SessionDescription) throws(SDPError) {
        guard !sdp.media.isEmpty else { throw SDPError("the offer has no media sections") }
        func pick(_ name: String) -> String? { sdp.media.lazy.compactMap { $0.attribute(name) }.first ?? sdp.attribute(name) }
        guard let ufrag = pick("ice-ufrag"), (4...256).contains(ufrag.utf8.count),
              let pwd = pick("ice-pwd"), (22...256).contains(pwd.utf8.count) else {
            throw SDPError("the offer needs a=ice-ufrag (4-256 characters) and a=ice-pwd (22-256)")
        }
        guard ufrag.utf8.allSatisfy(Self.isICEChar), pwd.utf8.allSatisfy(Self.isICEChar) else {
            throw SDPError("ICE credentials may hold only letters, digits, '+' and '/'")
        }
        let fps = sdp.media.flatMap { $0.all("fingerprint") } + sdp.attributes.filter { $0.name == "fingerprint" }.compactMap(\.value)
        guard let fp = fps.first(where: { $0.lowercased().hasPrefix("sha-256 ") }) else {
            throw SDPError("the offer needs a=fingerprint:sha-256")
        }
        let setup = pick("setup") ?? "actpass"
        guard setup == "actpass" || setup == "active" else {
            throw SDPError("a=setup:\(setup): Parley is the DTLS server, so the offer must be actpass or active")
        }
        iceUfrag = ufrag
        icePassword = pwd
        fingerprint = String(fp.dropFirst("sha-256 ".count)).trimmingCharacters(in: " ")
        self.setup = setup
        var sections: [Section] = []
        var mids = Set<String>()
        for m in sdp.media {
            guard let mid = m.mid, !mid.isEmpty, mid.utf8.count <= 32, mids.insert(mid).inserted else {
                throw SDPError("every media section needs a unique a=mid of 1-32 characters")
            }
            var codecs: [Codec] = []
            var extensions: [String: UInt8] = [:]
            if let names = Self.supportedCodecs[m.kind], m.proto.contains("RTP"), m.port != 0 {
                guard m.has("rtcp-mux") else { throw SDPError("m=\(m.kind) (mid \(mid)) needs a=rtcp-mux") }
                codecs = m.codecs.filter { c in names.contains { $0.lowercased() == c.name.lowercased() } && Self.acceptable(c) }
                let supported = Self.supportedExtensions[m.kind] ?? []
                for e in m.all("extmap") {
                    // a=extmap:<id>[/<direction>] <uri> [<attributes>] (RFC 8285 §8)
                    let parts = e.split(separator: " ")
                    guard parts.count >= 2, let id = UInt8(parts[0].split(separator: "/").first ?? ""), (1...14).contains(id),
                          supported.contains(String(parts[1])) else { continue }
                    extensions[String(parts[1])] = id
                }
            }
            let rids = m.kind == "video" && !codecs.isEmpty && extensions[Extension.rid] != nil ? Self.sendRids(m) : []
            sections.append(Section(mid: mid, kind: m.kind, direction: m.direction, codec: codecs.first, codecs: codecs,
                                    extensions: extensions, rids: rids, ssrcs: m.mediaSSRCs,
                                    msid: m.attribute("msid"), formats: m.formats, proto: m.proto))
        }
        self.sections = sections
    }

    /// Parses and checks `text`.
    public init(parsing text: String) throws(SDPError) {
        try self.init(SessionDescription(parsing: text))
    }

    static func isICEChar(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2B || c == 0x2F
    }

    /// The answer (RFC 8829 §5.3): `ufrag`/`password` the relay's ICE
    /// credentials, `fingerprint` its certificate's, `host`/`port` its media
    /// socket (the one host candidate). `canSend`: whether Parley may send
    /// media to this peer (it subscribes); `canReceive`: whether it may
    /// publish. `sending`: what the server sends on a section (by mid): the
    /// SSRC and the stream it belongs to, announced with `a=msid` and
    /// `a=ssrc` so the peer maps the SSRC to that section's receiver.
    ///
    /// `candidates`: the relay's candidates (UDP, ICE-TCP passive, either
    /// family); empty: the one UDP host candidate `host`:`port`. The first
    /// one gives the `m=` port and `c=` address.
    public func answer(ufrag: String, password: String, fingerprint: String, host: String, port: Int,
                       sessionID: UInt64, canSend: Bool, canReceive: Bool,
                       sending: [String: (ssrc: UInt32, stream: String)] = [:], candidates: [ICECandidate] = []) -> String {
        let candidates = candidates.isEmpty ? [ICECandidate(.udp, host: host, port: port)] : candidates
        let host = candidates[0].host, port = candidates[0].port
        let ipv6 = host.contains(":")
        let addrType = ipv6 ? "IP6" : "IP4"
        let accepted = sections.filter { $0.codec != nil }.map(\.mid)
        var out = "v=0\r\no=- \(sessionID) 2 IN \(addrType) \(host)\r\ns=parley\r\nt=0 0\r\na=ice-lite\r\n"
        if !accepted.isEmpty { out += "a=group:BUNDLE \(accepted.joined(separator: " "))\r\n" }
        out += "a=msid-semantic: WMS *\r\n"
        for s in sections {
            guard s.codec != nil else {
                // Rejected (RFC 8829 §5.3.1): port zero, the offered formats echoed.
                out += "m=\(s.kind) 0 \(s.proto) \(s.formats.joined(separator: " "))\r\nc=IN \(addrType) \(ipv6 ? "::" : "0.0.0.0")\r\n"
                out += "a=mid:\(s.mid)\r\na=inactive\r\n"
                continue
            }
            out += "m=\(s.kind) \(port) UDP/TLS/RTP/SAVPF \(s.codecs.map { String($0.payloadType) }.joined(separator: " "))\r\n"
            out += "c=IN \(addrType) \(host)\r\n"
            out += "a=mid:\(s.mid)\r\n"
            out += "a=\(s.direction.answer(canSend: canSend, canReceive: canReceive).rawValue)\r\n"
            out += "a=ice-ufrag:\(ufrag)\r\na=ice-pwd:\(password)\r\n"
            out += "a=fingerprint:sha-256 \(fingerprint)\r\na=setup:passive\r\n"
            out += "a=rtcp-mux\r\n"
            for (uri, id) in s.extensions.sorted(by: { $0.value < $1.value }) { out += "a=extmap:\(id) \(uri)\r\n" }
            let twcc = transportCC(s)
            for c in s.codecs {
                out += "a=rtpmap:\(c.payloadType) \(c.name)/\(c.clockRate)\(c.channels > 1 ? "/\(c.channels)" : "")\r\n"
                // The offer's fmtp echoed: H.264 profile-level-id and packetization-mode, VP9 profile-id, Opus settings.
                if let f = c.fmtp { out += "a=fmtp:\(c.payloadType) \(f)\r\n" }
                for fb in c.feedback where Self.supportedFeedback.contains(fb) {
                    if fb == "transport-cc" && !twcc { continue }
                    if fb == "goog-remb" && twcc { continue }
                    out += "a=rtcp-fb:\(c.payloadType) \(fb)\r\n"
                }
            }
            if !s.rids.isEmpty, canReceive, s.direction.sends {
                // RFC 8853 §5.3: the layers Parley takes, received.
                for r in s.rids { out += "a=rid:\(r) recv\r\n" }
                out += "a=simulcast:recv \(s.rids.joined(separator: ";"))\r\n"
            }
            if let send = sending[s.mid], canSend, s.direction == .sendrecv || s.direction == .recvonly {
                out += "a=msid:\(send.stream) \(send.ssrc)\r\n"
                out += "a=ssrc:\(send.ssrc) cname:\(send.stream)\r\na=ssrc:\(send.ssrc) msid:\(send.stream) \(send.ssrc)\r\n"
            }
            for c in candidates { out += "a=\(c.attribute)\r\n" }
            out += "a=end-of-candidates\r\n"
        }
        return out
    }

    /// RFC 8445 §5.1.2.1: type preference 126 (host), local preference 65535, component 1.
    public static let hostPriority: UInt32 = (126 << 24) | (65535 << 8) | 255
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
