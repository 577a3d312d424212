/// The invariants the SRTP fuzz target (tools/fuzz/srtp) checks, here so the
/// XCTest corpus replay runs exactly the same code. Input: byte 0 picks the
/// suite (bit 0) and RTP or RTCP (bit 1); byte 1 picks a bit to flip; the rest
/// is a packet. Returns nil when every invariant holds, else what broke.
enum SRTPSelfCheck {
    private static let keyBytes = (0..<30).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }

    static func check(_ input: [UInt8]) -> String? {
        guard input.count >= 2 else { return nil }
        let suite: SRTPSuite = input[0] & 1 == 0 ? .aesCM128HmacSHA1_80 : .aeadAES128GCM
        let rtcp = input[0] & 2 != 0
        let flip = Int(input[1])
        let packet = Array(input[2...])
        let key = Array(keyBytes.prefix(suite.keyLength + suite.saltLength))
        guard let material = try? SRTPKeyMaterial(suite: suite, keyAndSalt: key),
              let tx = try? SRTPContext(material: material, direction: .outbound),
              let rx = try? SRTPContext(material: material, direction: .inbound),
              let rx2 = try? SRTPContext(material: material, direction: .inbound) else { return "context setup failed" }

        // 1. Arbitrary bytes as SRTP/SRTCP: an error, never a crash; never accepted
        //    unless it really is a packet under this key (it cannot be, in practice).
        do throws(SRTPError) {
            _ = try rx2.unprotect(packet, rtcp: rtcp)
        } catch {
            switch error {
            case .authenticationFailed, .malformedPacket, .replayed: break
            default: return "unprotect of junk threw \(error)"
            }
        }

        // 2. The same bytes as plain RTP/RTCP: protect either refuses them as
        //    malformed, or the result unprotects to exactly the input.
        let protected: [UInt8]
        do throws(SRTPError) {
            protected = try tx.protect(packet, rtcp: rtcp)
        } catch {
            return error == .malformedPacket ? nil : "protect threw \(error)"
        }
        let overhead = rtcp ? suite.rtcpOverhead : suite.rtpOverhead
        guard protected.count == packet.count + overhead else { return "protected length \(protected.count)" }

        // 3. One flipped bit anywhere: refused (authentication, or malformed when
        //    the flip breaks the version or header length); never accepted.
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
        // 4. The same packet again is a replay.
        do throws(SRTPError) {
            _ = try rx.unprotect(protected, rtcp: rtcp)
            return "replay accepted"
        } catch {
            return error == .replayed ? nil : "replay threw \(error)"
        }
    }
}
