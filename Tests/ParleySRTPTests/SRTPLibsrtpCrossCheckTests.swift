import XCTest
@testable import ParleySRTP

/// Parley's SRTP engine against libsrtp2, both ways: what Parley protects
/// libsrtp unprotects to the same bytes and vice versa, for both suites, RTP
/// and RTCP, several SSRCs on one context, headers with CSRCs and extensions,
/// payloads from 0 to 1200 bytes, and a sequence-number wrap (ROC 0 → 1 → 2).
final class SRTPLibsrtpCrossCheckTests: XCTestCase {
    /// An RTP packet with `csrcs` CSRCs, an optional one-byte-header
    /// extension, and a payload of `size` bytes derived from `seed`.
    static func rtp(seq: UInt16, ssrc: UInt32, csrcs: Int = 0, extensionWords: Int? = nil, size: Int,
                    seed: UInt32) -> [UInt8] {
        var p: [UInt8] = [0x80 | UInt8(csrcs) | (extensionWords == nil ? 0 : 0x10), 96 | (seq & 1 == 0 ? 0x80 : 0),
                          UInt8(seq >> 8), UInt8(seq & 0xFF)]
        p += SRTPContextTests.be32(seed &* 160) + SRTPContextTests.be32(ssrc)
        for c in 0..<csrcs { p += SRTPContextTests.be32(0x1000_0000 + UInt32(c)) }
        if let words = extensionWords {
            p += [0xBE, 0xDE, 0, UInt8(words)]
            for w in 0..<words { p += [0x10, UInt8(w), 0, 0] }
        }
        var x = seed | 1
        for _ in 0..<size {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            p.append(UInt8(truncatingIfNeeded: x))
        }
        return p
    }

    /// A compound RTCP packet: sender report + SDES-like filler of `extra` words.
    static func rtcp(ssrc: UInt32, extra: Int, seed: UInt32) -> [UInt8] {
        var p: [UInt8] = [0x80, 200, 0, 6] + SRTPContextTests.be32(ssrc)
        p += SRTPContextTests.be32(seed) + SRTPContextTests.be32(~seed) + SRTPContextTests.be32(seed &* 90)
        p += SRTPContextTests.be32(seed) + SRTPContextTests.be32(seed &* 7)
        p += [0x81, 202, 0, UInt8(extra)]
        for i in 0..<extra { p += SRTPContextTests.be32(seed &+ UInt32(i)) }
        return p
    }

    /// The packet schedule: three SSRCs interleaved, sequence numbers from
    /// 65000 through two wraps (ROC 0, 1, 2), sizes and header shapes varied.
    static func schedule(_ count: Int) -> [[UInt8]] {
        let ssrcs: [UInt32] = [0x1111_1111, 0xCAFE_BABE, 0x0000_0001]
        return (0..<count).map { i in
            let stream = i % 3
            let n = i / 3
            let step = stream == 2 ? 97 : 1           // stream 2 jumps ahead 97 at a time: wraps sooner
            let seq = UInt16(truncatingIfNeeded: 65000 + n * step)
            let size = [0, 1, 15, 16, 17, 160, 200, 1200][i % 8]
            return rtp(seq: seq, ssrc: ssrcs[stream], csrcs: i % 5 == 0 ? 2 : 0,
                       extensionWords: i % 7 == 0 ? 2 : nil, size: size, seed: UInt32(i))
        }
    }

    func testParleyProtectsLibsrtpUnprotectsRTP() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let parley = try SRTPContext(material: m, direction: .outbound)
            let libsrtp = try LibsrtpPeer(material: m, outbound: false)
            for (i, plain) in Self.schedule(3000).enumerated() {
                let srtp = try parley.protect(plain)
                XCTAssertEqual(srtp.count, plain.count + suite.rtpOverhead)
                XCTAssertEqual(try libsrtp.unprotect(srtp), plain, "\(suite) packet \(i)")
            }
        }
    }

    func testLibsrtpProtectsParleyUnprotectsRTP() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let libsrtp = try LibsrtpPeer(material: m, outbound: true)
            let parley = try SRTPContext(material: m, direction: .inbound)
            for (i, plain) in Self.schedule(3000).enumerated() {
                let srtp = try libsrtp.protect(plain)
                XCTAssertEqual(try parley.unprotect(srtp), plain, "\(suite) packet \(i)")
                // libsrtp agrees it is a replay now; so do we.
                XCTAssertThrowsError(try parley.unprotect(srtp)) { XCTAssertEqual($0 as? SRTPError, .replayed) }
            }
        }
    }

    /// The same bytes from both engines: protection is deterministic, so a
    /// Parley packet must equal libsrtp's for the same key and input.
    func testIdenticalCiphertext() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let parley = try SRTPContext(material: m, direction: .outbound)
            let libsrtp = try LibsrtpPeer(material: m, outbound: true)
            for plain in Self.schedule(600) { XCTAssertEqual(try parley.protect(plain), try libsrtp.protect(plain), "\(suite)") }
            for i in 0..<20 {
                let plain = Self.rtcp(ssrc: 0xCAFE_BABE, extra: i, seed: UInt32(i))
                XCTAssertEqual(try parley.protect(plain, rtcp: true).count, try libsrtp.protect(plain, rtcp: true).count)
            }
        }
    }

    func testRTCPBothWays() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let parleyOut = try SRTPContext(material: m, direction: .outbound)
            let parleyIn = try SRTPContext(material: m, direction: .inbound)
            let libOut = try LibsrtpPeer(material: m, outbound: true)
            let libIn = try LibsrtpPeer(material: m, outbound: false)
            for i in 0..<300 {
                let ssrc: UInt32 = i % 2 == 0 ? 0xCAFE_BABE : 0x0BAD_F00D
                let plain = Self.rtcp(ssrc: ssrc, extra: i % 40, seed: UInt32(i))
                let fromParley = try parleyOut.protect(plain, rtcp: true)
                XCTAssertEqual(fromParley.count, plain.count + suite.rtcpOverhead)
                XCTAssertEqual(try libIn.unprotect(fromParley, rtcp: true), plain, "\(suite) \(i) parley → libsrtp")
                let fromLib = try libOut.protect(plain, rtcp: true)
                XCTAssertEqual(try parleyIn.unprotect(fromLib, rtcp: true), plain, "\(suite) \(i) libsrtp → parley")
                XCTAssertThrowsError(try parleyIn.unprotect(fromLib, rtcp: true)) { XCTAssertEqual($0 as? SRTPError, .replayed) }
            }
        }
    }

    /// A stream that starts past 2¹⁵ and one that starts right before the
    /// wrap, with reordering across the wrap, against libsrtp both ways.
    func testRolloverWithReorderingAcrossTheWrap() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let libOut = try LibsrtpPeer(material: m, outbound: true)
            let parleyIn = try SRTPContext(material: m, direction: .inbound)
            var protected: [[UInt8]] = []
            var plains: [[UInt8]] = []
            for n in 0..<200 {
                let plain = Self.rtp(seq: UInt16(truncatingIfNeeded: 65_436 + n), ssrc: 42, size: 100, seed: UInt32(n))
                plains.append(plain)
                protected.append(try libOut.protect(plain))
            }
            // Deliver in pairs swapped: 1, 0, 3, 2, … (so 0 arrives after 65535).
            for n in stride(from: 0, to: 200, by: 2) {
                XCTAssertEqual(try parleyIn.unprotect(protected[n + 1]), plains[n + 1], "\(suite) \(n + 1)")
                XCTAssertEqual(try parleyIn.unprotect(protected[n]), plains[n], "\(suite) \(n)")
            }
        }
    }
}

extension SRTPLibsrtpCrossCheckTests {
    /// libsrtp sending authenticated-only SRTCP (E = 0): Parley verifies it
    /// and leaves the payload as it is.
    func testUnencryptedSRTCPFromLibsrtp() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let libOut = try LibsrtpPeer(material: m, outbound: true, rtcpAuthenticateOnly: true)
            let parleyIn = try SRTPContext(material: m, direction: .inbound)
            for i in 0..<5 {
                let plain = Self.rtcp(ssrc: 7, extra: i, seed: UInt32(i))
                let srtcp = try libOut.protect(plain, rtcp: true)
                XCTAssertEqual(Array(srtcp.prefix(plain.count)), plain, "\(suite): payload in the clear")
                var forged = srtcp
                forged[10] ^= 0x40
                XCTAssertThrowsError(try parleyIn.unprotect(forged, rtcp: true)) {
                    XCTAssertEqual($0 as? SRTPError, .authenticationFailed)
                }
                XCTAssertEqual(try parleyIn.unprotect(srtcp, rtcp: true), plain, "\(suite) \(i)")
            }
        }
    }
}
