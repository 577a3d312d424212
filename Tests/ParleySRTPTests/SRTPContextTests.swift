import Foundation
import XCTest
@testable import ParleySRTP

final class SRTPContextTests: XCTestCase {
    /// A minimal RTP packet: V=2, PT 96, the given sequence number and SSRC.
    static func rtpPacket(seq: UInt16, ssrc: UInt32 = 0xCAFE_BABE, timestamp: UInt32 = 0x1234_5678,
                          payload: [UInt8] = Array("parley payload 0123456789".utf8)) -> [UInt8] {
        [0x80, 96, UInt8(seq >> 8), UInt8(seq & 0xFF)] + be32(timestamp) + be32(ssrc) + payload
    }

    /// An RTCP receiver report with one report block (RFC 3550 §6.4.2).
    static func rtcpReceiverReport(ssrc: UInt32 = 0xCAFE_BABE) -> [UInt8] {
        [0x81, 201, 0, 7] + be32(ssrc) + be32(0x1111_1111) + [0, 0, 0, 1] + be32(100) + be32(7) + be32(0) + be32(0)
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    private func pair(_ suite: SRTPSuite, window: Int = 1024) throws -> (SRTPContext, SRTPContext, SRTPKeyMaterial) {
        let m = SRTPKeyMaterial.random(suite: suite)
        return (try SRTPContext(material: m, direction: .outbound),
                try SRTPContext(material: m, direction: .inbound, replayWindow: window), m)
    }

    func testSuiteParameters() {
        XCTAssertEqual(SRTPSuite.default, .aesCM128HmacSHA1_80)
        XCTAssertEqual(SRTPSuite.aesCM128HmacSHA1_80.keyLength + SRTPSuite.aesCM128HmacSHA1_80.saltLength, 30)
        XCTAssertEqual(SRTPSuite.aeadAES128GCM.keyLength + SRTPSuite.aeadAES128GCM.saltLength, 28)
        XCTAssertEqual(SRTPSuite.aesCM128HmacSHA1_80.tagLength, 10)
        XCTAssertEqual(SRTPSuite.aeadAES128GCM.tagLength, 16)
        XCTAssertEqual(SRTPSuite(sdesName: "AEAD_AES_128_GCM"), .aeadAES128GCM)
        XCTAssertNil(SRTPSuite(sdesName: "AES_CM_128_HMAC_SHA1_32"))
    }

    func testRoundTripBothSuitesRTPAndRTCP() throws {
        for suite in SRTPSuite.allCases {
            let (tx, rx, _) = try pair(suite)
            for seq in UInt16(65530)...UInt16(65535) {
                let plain = Self.rtpPacket(seq: seq)
                let srtp = try tx.protect(plain)
                XCTAssertEqual(srtp.count, plain.count + suite.rtpOverhead, "\(suite)")
                XCTAssertEqual(Array(srtp.prefix(12)), Array(plain.prefix(12)), "RTP header stays in clear")
                XCTAssertNotEqual(Array(srtp[12..<plain.count]), Array(plain[12...]), "payload is encrypted")
                XCTAssertEqual(try rx.unprotect(srtp), plain, "\(suite)")
            }
            // Past the sequence number wrap (rollover counter 1).
            let wrapped = Self.rtpPacket(seq: 3)
            XCTAssertEqual(try rx.unprotect(try tx.protect(wrapped)), wrapped)

            let rtcp = Self.rtcpReceiverReport()
            let srtcp = try tx.protect(rtcp, rtcp: true)
            XCTAssertEqual(srtcp.count, rtcp.count + suite.rtcpOverhead)
            // The E flag + SRTCP index sit before the tag for AES-CM (RFC 3711 §3.4)
            // but after it for AEAD (RFC 7714 §9.1).
            let indexOffset = suite == .aeadAES128GCM ? srtcp.count - 4 : srtcp.count - suite.tagLength - 4
            XCTAssertEqual(srtcp[indexOffset] & 0x80, 0x80, "E flag: SRTCP payload encrypted (\(suite))")
            XCTAssertEqual(try rx.unprotect(srtcp, rtcp: true), rtcp)
        }
    }

    func testInPlaceWithCallerBuffer() throws {
        let (tx, rx, _) = try pair(.aesCM128HmacSHA1_80)
        let plain = Self.rtpPacket(seq: 1)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 16)
        defer { buffer.deallocate() }
        plain.withUnsafeBytes { buffer.copyMemory(from: $0) }
        let n = try tx.protectRTP(buffer, length: plain.count)
        XCTAssertEqual(n, plain.count + 10)
        let m = try rx.unprotectRTP(buffer, length: n)
        XCTAssertEqual(Array(buffer.prefix(m)), plain)

        // Too little spare room for the tag is refused before libsrtp writes anything.
        let tight = UnsafeMutableRawBufferPointer.allocate(byteCount: plain.count + 9, alignment: 16)
        defer { tight.deallocate() }
        plain.withUnsafeBytes { tight.copyMemory(from: $0) }
        XCTAssertThrowsError(try tx.protectRTP(tight, length: plain.count)) { error in
            XCTAssertEqual(error as? SRTPError, .bufferTooSmall(needed: 10, available: 9))
        }
    }

    func testForgedPacketFailsAuthentication() throws {
        for suite in SRTPSuite.allCases {
            let (_, rx, _) = try pair(suite)
            let attacker = try SRTPContext(material: .random(suite: suite), direction: .outbound)
            let forged = try attacker.protect(Self.rtpPacket(seq: 10))
            XCTAssertThrowsError(try rx.unprotect(forged)) { XCTAssertEqual($0 as? SRTPError, .authenticationFailed) }
            XCTAssertThrowsError(try rx.unprotect(try attacker.protect(Self.rtcpReceiverReport(), rtcp: true), rtcp: true)) {
                XCTAssertEqual($0 as? SRTPError, .authenticationFailed)
            }

            // A single flipped bit anywhere (header, payload or tag) fails too.
            let (tx2, rx2, _) = try pair(suite)
            let good = try tx2.protect(Self.rtpPacket(seq: 20))
            for i in [1, 8, 15, good.count - 1] {
                var bad = good
                bad[i] ^= 0x01
                XCTAssertThrowsError(try rx2.unprotect(bad), "byte \(i)") {
                    XCTAssertEqual($0 as? SRTPError, .authenticationFailed)
                }
            }
            XCTAssertNoThrow(try rx2.unprotect(good))
        }
    }

    func testReplayedPacketIsRejected() throws {
        for suite in SRTPSuite.allCases {
            let (tx, rx, _) = try pair(suite, window: 128)
            let p100 = try tx.protect(Self.rtpPacket(seq: 100))
            XCTAssertNoThrow(try rx.unprotect(p100))
            XCTAssertThrowsError(try rx.unprotect(p100)) { XCTAssertEqual($0 as? SRTPError, .replayed) }

            // Out of order within the window is fine; older than the window is not.
            var later: [[UInt8]] = []
            for seq in UInt16(101)...UInt16(400) { later.append(try tx.protect(Self.rtpPacket(seq: seq))) }
            XCTAssertNoThrow(try rx.unprotect(later[299]))              // seq 400
            XCTAssertNoThrow(try rx.unprotect(later[250]))              // seq 351, 49 behind
            XCTAssertThrowsError(try rx.unprotect(later[0])) {         // seq 101, 299 behind
                XCTAssertEqual($0 as? SRTPError, .replayed)
            }

            let rtcp = try tx.protect(Self.rtcpReceiverReport(), rtcp: true)
            XCTAssertNoThrow(try rx.unprotect(rtcp, rtcp: true))
            XCTAssertThrowsError(try rx.unprotect(rtcp, rtcp: true)) { XCTAssertEqual($0 as? SRTPError, .replayed) }
        }
    }

    func testMalformedInputsAreErrorsNotCrashes() throws {
        let (tx, rx, _) = try pair(.aesCM128HmacSHA1_80)
        XCTAssertThrowsError(try tx.protect([0x80, 0, 0])) { XCTAssertEqual($0 as? SRTPError, .malformedPacket) }
        XCTAssertThrowsError(try rx.unprotect([])) { XCTAssertEqual($0 as? SRTPError, .malformedPacket) }
        XCTAssertThrowsError(try rx.unprotect(Array(repeating: 0x80, count: 21))) {
            XCTAssertEqual($0 as? SRTPError, .malformedPacket)
        }
        XCTAssertThrowsError(try rx.unprotect([0x40] + Array(repeating: 0, count: 40))) {
            XCTAssertEqual($0 as? SRTPError, .malformedPacket)
        }
        // Random garbage that looks like RTP: dropped with an error.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let len = Int.random(in: 22...200, using: &rng)
            let junk = [0x80] + (1..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }
            XCTAssertThrowsError(try rx.unprotect(junk))
            XCTAssertThrowsError(try rx.unprotect(junk, rtcp: true))
        }
        XCTAssertThrowsError(try SRTPContext(material: .random(), direction: .inbound, replayWindow: 10))
    }

    // MARK: SDES (RFC 4568, RFC 7714)

    func testSDESFormatAndParse() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let line = m.cryptoAttribute(tag: 1)
            XCTAssertTrue(line.hasPrefix("a=crypto:1 \(suite.sdesName) inline:"), line)
            let (tag, parsed) = try SRTPKeyMaterial.parse(cryptoAttribute: line)
            XCTAssertEqual(tag, 1)
            XCTAssertEqual(parsed, m)
        }
        // RFC 4568 §4 example (its lifetime and MKI: the MKI is refused, the lifetime accepted).
        let rfc = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
        XCTAssertThrowsError(try SRTPKeyMaterial.parse(cryptoAttribute: rfc))
        let (_, noMKI) = try SRTPKeyMaterial.parse(cryptoAttribute: "crypto:7 AES_CM_128_HMAC_SHA1_80 "
            + "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20")
        XCTAssertEqual(noMKI.masterKey, Array(Data(base64Encoded: "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")!.prefix(16)))

        let bad = ["a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                   "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtx",
                   "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVB!",
                   "a=crypto:1 AES_CM_128_HMAC_SHA1_80 PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                   "a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                   "a=crypto:1 AEAD_AES_128_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                   "a=rtpmap:0 PCMU/8000"]
        for line in bad { XCTAssertThrowsError(try SRTPKeyMaterial.parse(cryptoAttribute: line), line) }
        XCTAssertThrowsError(try SRTPKeyMaterial(suite: .aeadAES128GCM, masterKey: Array(repeating: 0, count: 16),
                                                 masterSalt: Array(repeating: 0, count: 14)))
    }
}

extension SRTPContextTests {
    /// Reordered packets inside the window are accepted exactly once; the
    /// window follows the highest index across a sequence-number wrap.
    func testOutOfOrderWithinWindowAcceptedOnce() throws {
        for suite in SRTPSuite.allCases {
            let (tx, rx, _) = try pair(suite)
            var sent: [[UInt8]] = []
            for n in 0..<2000 { sent.append(try tx.protect(Self.rtpPacket(seq: UInt16(truncatingIfNeeded: 64_000 + n)))) }
            var order = Array(0..<2000)
            // Shuffle within blocks of 64 (deterministic): reordering well inside the 1024 window.
            var x: UInt32 = 12345
            for start in stride(from: 0, to: 2000, by: 64) {
                let end = min(start + 64, 2000)
                for i in start..<end {
                    x ^= x << 13; x ^= x >> 17; x ^= x << 5
                    order.swapAt(i, start + Int(x % UInt32(end - start)))
                }
            }
            for i in order {
                XCTAssertNoThrow(try rx.unprotect(sent[i]), "\(suite) packet \(i)")
                XCTAssertThrowsError(try rx.unprotect(sent[i])) { XCTAssertEqual($0 as? SRTPError, .replayed) }
            }
            // 1536 packets after the wrap: ROC is 1 now.
            XCTAssertEqual(rx.streams.streams[0].rtpHighest, 1 << 16 | UInt64(UInt16(truncatingIfNeeded: 64_000 + 1999)))
        }
    }

    /// A forged packet never moves state: not a far-ahead sequence number,
    /// not a new SSRC.
    func testForgedPacketsDoNotMoveState() throws {
        for suite in SRTPSuite.allCases {
            let (tx, rx, _) = try pair(suite)
            let attacker = try SRTPContext(material: .random(suite: suite), direction: .outbound)
            XCTAssertNoThrow(try rx.unprotect(try tx.protect(Self.rtpPacket(seq: 100))))
            // Forged: same SSRC, 30000 ahead (would push ROC guesses and the window).
            XCTAssertThrowsError(try rx.unprotect(try attacker.protect(Self.rtpPacket(seq: 30_100)))) {
                XCTAssertEqual($0 as? SRTPError, .authenticationFailed)
            }
            // Forged: new SSRC; no stream is created for it.
            XCTAssertThrowsError(try rx.unprotect(try attacker.protect(Self.rtpPacket(seq: 5, ssrc: 99)))) {
                XCTAssertEqual($0 as? SRTPError, .authenticationFailed)
            }
            XCTAssertEqual(rx.streams.count, 1)
            XCTAssertNoThrow(try rx.unprotect(try tx.protect(Self.rtpPacket(seq: 101))))
            XCTAssertEqual(rx.streams.streams[0].rtpHighest, 101)
        }
    }

    /// Outbound: protecting an index twice reuses keystream, so it is refused
    /// unless the context allows retransmission (identical resend, same bytes).
    func testOutboundRepeatNeedsAllowRetransmit() throws {
        for suite in SRTPSuite.allCases {
            let m = SRTPKeyMaterial.random(suite: suite)
            let strict = try SRTPContext(material: m, direction: .outbound)
            let nack = try SRTPContext(material: m, direction: .outbound, allowRetransmit: true)
            let p = Self.rtpPacket(seq: 7)
            let first = try strict.protect(p)
            XCTAssertThrowsError(try strict.protect(p)) { XCTAssertEqual($0 as? SRTPError, .replayed) }
            XCTAssertEqual(try nack.protect(p), first)
            XCTAssertEqual(try nack.protect(p), first, "an identical resend is byte-identical")
            for seq in UInt16(8)...UInt16(1100) { _ = try nack.protect(Self.rtpPacket(seq: seq)) }
            XCTAssertThrowsError(try nack.protect(p), "older than the window") { XCTAssertEqual($0 as? SRTPError, .replayed) }
        }
    }

    /// One context, many SSRCs (a subscriber's outbound context carries many
    /// publishers): each keeps its own ROC and window; past the table size the
    /// least recently used stream is forgotten.
    func testManySSRCsOnOneContext() throws {
        for suite in SRTPSuite.allCases {
            let (tx, rx, _) = try pair(suite)
            for round in 0..<3 {
                for s in 0..<40 {
                    let seq = UInt16(truncatingIfNeeded: 65_534 + round + s * 1000)
                    let plain = Self.rtpPacket(seq: seq, ssrc: 0x1000 + UInt32(s))
                    XCTAssertEqual(try rx.unprotect(try tx.protect(plain)), plain, "\(suite) ssrc \(s) round \(round)")
                }
            }
            XCTAssertEqual(rx.streams.count, 40)
            let limit = SRTPStreamTable.maxStreams
            for s in 0..<(limit + 10) {
                let plain = Self.rtpPacket(seq: 1, ssrc: 0x10_0000 + UInt32(s))
                XCTAssertEqual(try rx.unprotect(try tx.protect(plain)), plain)
            }
            XCTAssertEqual(rx.streams.count, limit)
        }
    }
}
