/// Invariants checked on arbitrary input by the fuzz harness
/// (tools/fuzz/srtp) and by the XCTest replay of its committed corpus.
/// Returns nil when every invariant holds, else what broke.
enum SRTPSelfCheck {
    static let material = try! SRTPKeyMaterial(suite: .aesCM128HmacSHA1_80,
                                               keyAndSalt: (0..<30).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })
    static let gcmMaterial = try! SRTPKeyMaterial(suite: .aeadAES128GCM,
                                                  keyAndSalt: (0..<28).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })

    static func check(_ input: [UInt8]) -> String? {
        wholeInput(input) ?? selectedSuite(input)
    }

    /// The whole input, AES-CM:
    /// 1. Arbitrary bytes given to unprotect (RTP and RTCP) are refused with
    ///    an error, never accepted (they carry no valid tag) and never crash.
    /// 2. The same bytes as a plaintext RTP/RTCP packet (version forced to 2)
    ///    either are refused by protect, or protect → unprotect returns them
    ///    unchanged and the length grew by exactly the overhead.
    /// 3. SDES parsing of the bytes as text never crashes, and what parses
    ///    formats back to an attribute that parses to the same key.
    static func wholeInput(_ input: [UInt8]) -> String? {
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

    /// Byte 0 picks the suite (bit 0) and RTP or RTCP (bit 1), byte 1 a bit
    /// to flip, the rest is the packet:
    /// 4. Errors are only the packet-path ones (authentication, malformed, replay).
    /// 5. A protected packet with one flipped bit is refused (authentication,
    ///    or malformed when the flip breaks the version or header length).
    /// 6. The genuine packet then unprotects to the input, and a second time is a replay.
    static func selectedSuite(_ input: [UInt8]) -> String? {
        guard input.count >= 2 else { return nil }
        let m = input[0] & 1 == 0 ? material : gcmMaterial
        let rtcp = input[0] & 2 != 0
        let flip = Int(input[1])
        let packet = Array(input[2...])
        guard let tx = try? SRTPContext(material: m, direction: .outbound),
              let rx = try? SRTPContext(material: m, direction: .inbound),
              let junkRx = try? SRTPContext(material: m, direction: .inbound) else { return "context creation failed" }
        do throws(SRTPError) {
            _ = try junkRx.unprotect(packet, rtcp: rtcp)
            return "junk accepted"
        } catch {
            switch error {
            case .authenticationFailed, .malformedPacket, .replayed: break
            default: return "unprotect of junk threw \(error)"
            }
        }
        let protected: [UInt8]
        do throws(SRTPError) {
            protected = try tx.protect(packet, rtcp: rtcp)
        } catch {
            return error == .malformedPacket ? nil : "protect threw \(error)"
        }
        var forged = protected
        forged[(flip * 7) % forged.count] ^= UInt8(1) << UInt8(flip & 7)
        do throws(SRTPError) {
            _ = try rx.unprotect(forged, rtcp: rtcp)
            return "a packet with a flipped bit was accepted"
        } catch {
            if error != .authenticationFailed && error != .malformedPacket { return "forged packet threw \(error)" }
        }
        do throws(SRTPError) {
            guard try rx.unprotect(protected, rtcp: rtcp) == packet else { return "round trip changed the packet" }
        } catch {
            return "unprotect of our own packet threw \(error)"
        }
        do throws(SRTPError) {
            _ = try rx.unprotect(protected, rtcp: rtcp)
            return "replay accepted"
        } catch {
            return error == .replayed ? nil : "replay threw \(error)"
        }
    }
}
