/// Invariants checked on arbitrary input by the fuzz harness
/// (tools/fuzz/targets/sdp.swift) and by the XCTest replay of its committed
/// corpus. Returns nil when every invariant holds, else what broke.
enum SDPSelfCheck {
    static func check(_ input: [UInt8]) -> String? {
        let text = String(decoding: input, as: UTF8.self)
        // 1. Parsing never crashes; what parses keeps to the limits.
        guard let sdp = try? SessionDescription(parsing: text) else { return nil }
        if sdp.media.count > SessionDescription.maxMediaSections { return "more media sections than the limit" }
        for m in sdp.media {
            _ = m.codecs
            _ = m.mediaSSRCs
            _ = m.direction
            if m.formats.count > 64 { return "more formats than the limit" }
        }
        // 2. An offer that is taken gives an answer that parses, with one
        //    section per offered section, the same mids in order, and a
        //    codec only where the offer had it.
        guard let offer = try? WebRTCOffer(sdp) else { return nil }
        let answer = offer.answer(ufrag: "abcdefgh", password: "abcdefghijklmnopqrstuvwx", fingerprint: "AA:BB", host: "192.0.2.1",
                                  port: 40000, sessionID: 1, canSend: true, canReceive: true)
        guard let parsed = try? SessionDescription(parsing: answer) else { return "the answer does not parse" }
        if parsed.media.count != offer.sections.count { return "answer has \(parsed.media.count) sections for \(offer.sections.count)" }
        for (a, o) in zip(parsed.media, offer.sections) {
            if a.mid != o.mid { return "answer mid \(a.mid ?? "nil") for \(o.mid)" }
            if let c = o.codec {
                // Every codec taken, the one the peer sends with first.
                if a.formats != o.codecs.map({ "\($0.payloadType)" }) || a.formats.first != "\(c.payloadType)" {
                    return "answer formats \(a.formats) for payload type \(c.payloadType)"
                }
            } else if a.port != 0 {
                return "a rejected section has port \(a.port)"
            }
        }
        return nil
    }
}
