/// Invariants checked on arbitrary input by the fuzz harness
/// (tools/fuzz/srtp) and by the XCTest replay of its committed corpus.
/// Returns nil when every invariant holds, else what broke.
enum SRTPSelfCheck {
    static let material = try! SRTPKeyMaterial(suite: .aesCM128HmacSHA1_80,
                                               keyAndSalt: (0..<30).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })

    /// 1. Arbitrary bytes given to unprotect (RTP and RTCP) are refused with
    ///    an error, never accepted (they carry no valid tag) and never crash.
    /// 2. The same bytes as a plaintext RTP/RTCP packet (version forced to 2)
    ///    either are refused by protect, or protect → unprotect returns them
    ///    unchanged and the length grew by exactly the overhead.
    /// 3. SDES parsing of the bytes as text never crashes, and what parses
    ///    formats back to an attribute that parses to the same key.
    static func check(_ input: [UInt8]) -> String? {
        guard let tx = try? SRTPContext(material: material, direction: .outbound),
              let rx = try? SRTPContext(material: material, direction: .inbound) else { return "context creation failed" }
        for rtcp in [false, true] {
            if (try? rx.unprotect(input, rtcp: rtcp)) != nil { return "forged \(rtcp ? "SRTCP" : "SRTP") accepted" }
        }
        if !input.isEmpty {
            var plain = input
            plain[0] = 0x80 | (plain[0] & 0x3F)
            for rtcp in [false, true] {
                guard let protected = try? tx.protect(plain, rtcp: rtcp) else { continue }
                let overhead = rtcp ? material.suite.rtcpOverhead : material.suite.rtpOverhead
                if protected.count != plain.count + overhead { return "protect grew by \(protected.count - plain.count)" }
                guard let back = try? rx.unprotect(protected, rtcp: rtcp) else { return "own packet refused (rtcp: \(rtcp))" }
                if back != plain { return "round trip changed the packet (rtcp: \(rtcp))" }
            }
        }
        let text = String(decoding: input, as: UTF8.self)
        if let (tag, m) = try? SRTPKeyMaterial.parse(cryptoAttribute: text) {
            guard let (tag2, m2) = try? SRTPKeyMaterial.parse(cryptoAttribute: m.cryptoAttribute(tag: tag)),
                  tag2 == tag, m2 == m else { return "SDES format → parse changed the key" }
        }
        return nil
    }
}
