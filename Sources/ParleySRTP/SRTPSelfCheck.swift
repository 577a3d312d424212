/// Invariants checked on arbitrary input by the fuzz harness
/// (tools/fuzz/srtp) and by the XCTest replay of its committed corpus.
/// Returns nil when every invariant holds, else what broke.
///
/// The contexts are created once (srtp_create costs milliseconds with
/// Debian's NSS-backed libsrtp2), so the checker keeps state: it is for one
/// thread at a time (libFuzzer and XCTest both call it serially).
enum SRTPSelfCheck {
    static let material = try! SRTPKeyMaterial(suite: .aesCM128HmacSHA1_80,
                                               keyAndSalt: (0..<30).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })
    nonisolated(unsafe) static let tx = try! SRTPContext(material: material, direction: .outbound)
    nonisolated(unsafe) static let rx = try! SRTPContext(material: material, direction: .inbound)
    /// Sequence number for the next round trip: strictly increasing, so the
    /// receiver never sees a replay and both ends agree on the rollover counter.
    nonisolated(unsafe) static var sequence: UInt32 = 0
    static let ssrc: [UInt8] = [0x5E, 0x1F, 0xC0, 0xDE]

    /// 1. Arbitrary bytes given to unprotect (RTP and RTCP) are refused with
    ///    an error, never accepted (they carry no valid tag) and never crash.
    /// 2. The same bytes as a plaintext RTP/RTCP packet (version 2, our SSRC
    ///    and next sequence number; everything else, CSRC count, extension,
    ///    padding bits and contents, from the input) either are refused by
    ///    protect, or protect → unprotect returns them unchanged and the
    ///    length grew by exactly the overhead.
    /// 3. SDES parsing of the bytes as text never crashes, and what parses
    ///    formats back to an attribute that parses to the same key.
    static func check(_ input: [UInt8]) -> String? {
        for rtcp in [false, true] {
            if (try? rx.unprotect(input, rtcp: rtcp)) != nil { return "forged \(rtcp ? "SRTCP" : "SRTP") accepted" }
        }
        if input.count >= 12 {
            var plain = input
            plain[0] = 0x80 | (plain[0] & 0x3F)
            sequence &+= 1
            plain[2] = UInt8(truncatingIfNeeded: sequence >> 8)
            plain[3] = UInt8(truncatingIfNeeded: sequence)
            plain.replaceSubrange(8..<12, with: ssrc)
            if let broken = roundTrip(plain, rtcp: false) { return broken }
        }
        if input.count >= 8 {
            var plain = input
            plain[0] = 0x80 | (plain[0] & 0x3F)
            plain.replaceSubrange(4..<8, with: ssrc)
            if let broken = roundTrip(plain, rtcp: true) { return broken }
        }
        let text = String(decoding: input, as: UTF8.self)
        if let (tag, m) = try? SRTPKeyMaterial.parse(cryptoAttribute: text) {
            guard let (tag2, m2) = try? SRTPKeyMaterial.parse(cryptoAttribute: m.cryptoAttribute(tag: tag)),
                  tag2 == tag, m2 == m else { return "SDES format → parse changed the key" }
        }
        return nil
    }

    private static func roundTrip(_ plain: [UInt8], rtcp: Bool) -> String? {
        guard let protected = try? tx.protect(plain, rtcp: rtcp) else { return nil }
        let overhead = rtcp ? material.suite.rtcpOverhead : material.suite.rtpOverhead
        if protected.count != plain.count + overhead { return "protect grew by \(protected.count - plain.count)" }
        do {
            let back = try rx.unprotect(protected, rtcp: rtcp)
            return back == plain ? nil : "round trip changed the packet (rtcp: \(rtcp))"
        } catch {
            return "own packet refused: \(error) (rtcp: \(rtcp))"
        }
    }
}
