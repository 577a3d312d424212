import Foundation
import XCTest
@testable import ParleySRTP
import ParleyTestSupport

/// SRTP checked against implementations nobody here wrote: an expected
/// packet computed step by step with the `openssl` command line (RFC 3711
/// §4.1.1 AES-CM, §4.2 HMAC-SHA1, §4.3 key derivation), and live SRTP/SRTCP
/// from ffmpeg's `srtp://` output.
final class SRTPInteropTests: XCTestCase {
    // MARK: helpers

    private func hex(_ s: String) -> [UInt8] {
        let c = Array(s.filter { !$0.isWhitespace }.utf8)
        return stride(from: 0, to: c.count, by: 2).map { UInt8(String(decoding: c[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    private func hexString(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    /// Runs a tool, feeding `input` on stdin; returns stdout.
    private func run(_ tool: String, _ args: [String], input: [UInt8] = []) throws -> [UInt8] {
        let r = try runProcess(tool, args, input: input)
        guard r.status == 0 else {
            throw NSError(domain: tool, code: Int(r.status),
                          userInfo: [NSLocalizedDescriptionKey: String(decoding: r.err, as: UTF8.self)])
        }
        return [UInt8](r.out)
    }

    /// AES-128 in counter mode from `iv`, applied to `data` (keystream when data is zeros).
    private func opensslAESCTR(key: [UInt8], iv: [UInt8], _ data: [UInt8]) throws -> [UInt8] {
        try run("/usr/bin/openssl", ["enc", "-aes-128-ctr", "-nosalt", "-K", hexString(key), "-iv", hexString(iv)], input: data)
    }

    private func opensslHMACSHA1(key: [UInt8], _ data: [UInt8]) throws -> [UInt8] {
        try run("/usr/bin/openssl", ["dgst", "-sha1", "-binary", "-mac", "HMAC", "-macopt", "hexkey:" + hexString(key)],
                input: data)
    }

    /// RFC 3711 §4.3.1 with key_derivation_rate 0: x = label ‖ 0^48 XOR master salt,
    /// keystream from AES-CM with IV = x · 2^16.
    private func deriveSessionKey(masterKey: [UInt8], masterSalt: [UInt8], label: UInt8, length: Int) throws -> [UInt8] {
        var iv = masterSalt + [0, 0]
        iv[7] ^= label
        return try opensslAESCTR(key: masterKey, iv: iv, [UInt8](repeating: 0, count: length))
    }

    // MARK: known answer

    /// RFC 3711 Appendix B.3 key derivation, then one SRTP packet built by
    /// hand with openssl and compared byte for byte with SRTPContext's.
    func testRFC3711AppendixB3KeysAndKnownAnswerPacket() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "openssl CLI missing")
        let masterKey = hex("E1F97A0D3E018BE0D64FA32C06DE4139")
        let masterSalt = hex("0EC675AD498AFEEBB6960B3AABE6")

        // Our openssl-based derivation reproduces the RFC's published session keys.
        let ke = try deriveSessionKey(masterKey: masterKey, masterSalt: masterSalt, label: 0x00, length: 16)
        let ka = try deriveSessionKey(masterKey: masterKey, masterSalt: masterSalt, label: 0x01, length: 20)
        let ks = try deriveSessionKey(masterKey: masterKey, masterSalt: masterSalt, label: 0x02, length: 14)
        XCTAssertEqual(ke, hex("C61E7A93744F39EE10734AFE3FF7A087"))
        XCTAssertEqual(ks, hex("30CBBC08863D8C85D49DB34A9AE1"))
        XCTAssertEqual(ka, hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"))

        // The packet: SSRC, sequence number, ROC 0 → index i = SEQ.
        let ssrc: UInt32 = 0xDECA_FBAD
        let seq: UInt16 = 0x1234
        let payload = Array("Parley known-answer test payload: 0123456789abcdef".utf8)
        let plain = SRTPContextTests.rtpPacket(seq: seq, ssrc: ssrc, timestamp: 0xCAFE_0001, payload: payload)
        let header = Array(plain.prefix(12))

        // §4.1.1: IV = (k_s · 2^16) XOR (SSRC · 2^64) XOR (i · 2^16).
        var iv = ks + [0, 0]
        let s = SRTPContextTests.be32(ssrc)
        for j in 0..<4 { iv[4 + j] ^= s[j] }
        iv[12] ^= UInt8(seq >> 8)
        iv[13] ^= UInt8(seq & 0xFF)
        let encrypted = try opensslAESCTR(key: ke, iv: iv, payload)
        // §4.2: tag = HMAC-SHA1(k_a, header ‖ encrypted payload ‖ ROC)[0..<10].
        let tag = Array(try opensslHMACSHA1(key: ka, header + encrypted + [0, 0, 0, 0]).prefix(10))
        let expected = header + encrypted + tag

        let material = try SRTPKeyMaterial(suite: .aesCM128HmacSHA1_80, masterKey: masterKey, masterSalt: masterSalt)
        let tx = try SRTPContext(material: material, direction: .outbound)
        XCTAssertEqual(hexString(try tx.protect(plain)), hexString(expected))

        // And the hand-built packet is accepted by an inbound context.
        let rx = try SRTPContext(material: material, direction: .inbound)
        XCTAssertEqual(try rx.unprotect(expected), plain)
    }

    // MARK: ffmpeg

    /// A UDP socket on 127.0.0.1 (the test's side; the module itself never touches sockets).
    private final class UDPReceiver {
        let fd: Int32
        let port: UInt16

        init?(port: UInt16) {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            var size: Int32 = 4 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard ok == 0 else { close(fd); return nil }
            var bound = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
            self.fd = fd
            self.port = UInt16(bigEndian: bound.sin_port)
        }

        deinit { close(fd) }

        /// Every datagram already queued (non-blocking drain).
        func drain() -> [[UInt8]] {
            var out: [[UInt8]] = []
            var buf = [UInt8](repeating: 0, count: 2048)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n <= 0 { break }
                out.append(Array(buf.prefix(n)))
            }
            return out
        }
    }

    /// An RTP port and RTP+1 for RTCP, as ffmpeg's srtp:// output uses.
    private func receiverPair() throws -> (UDPReceiver, UDPReceiver) {
        for _ in 0..<50 {
            guard let rtp = UDPReceiver(port: 0), rtp.port < 65535 else { continue }
            if let rtcp = UDPReceiver(port: rtp.port + 1) { return (rtp, rtcp) }
        }
        throw XCTSkip("no free adjacent UDP ports")
    }

    /// ffmpeg (libavformat's own SRTP code) sends a 440 Hz tone as PCMU over
    /// SRTP with a key we chose; we unprotect every packet and check the RTP
    /// headers, the μ-law audio (a 440 Hz tone has ~880 zero crossings a
    /// second), and ffmpeg's SRTCP sender report. ffmpeg has exited before we
    /// read, so nothing depends on timing.
    func testFFmpegSRTPInterop() throws {
        let ffmpeg = "/usr/bin/ffmpeg"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: ffmpeg), "ffmpeg missing")
        let material = SRTPKeyMaterial.random(suite: .aesCM128HmacSHA1_80)
        let (rtpSocket, rtcpSocket) = try receiverPair()
        let b64 = Data(material.keyAndSalt).base64EncodedString()

        let sdp = String(decoding: try run(ffmpeg, [
            "-hide_banner", "-loglevel", "error", "-nostdin",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=2",
            "-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1",
            "-f", "rtp", "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", b64,
            "srtp://127.0.0.1:\(rtpSocket.port)?pkt_size=182",
        ]), as: UTF8.self)

        // ffmpeg prints an SDP with our key as an RFC 4568 crypto attribute: parse it.
        let cryptoLine = try XCTUnwrap(sdp.split(whereSeparator: \.isNewline).first { $0.hasPrefix("a=crypto:") })
        let (tag, fromSDP) = try SRTPKeyMaterial.parse(cryptoAttribute: String(cryptoLine))
        XCTAssertEqual(tag, 1)
        XCTAssertEqual(fromSDP, material)

        let packets = rtpSocket.drain()
        XCTAssertGreaterThanOrEqual(packets.count, 50, "2 s of PCMU in ≤170-byte payloads")
        let rx = try SRTPContext(material: material, direction: .inbound)
        var samples: [Int] = []
        var lastSeq: UInt16?
        var lastTimestamp: UInt32?
        var ssrc: UInt32?
        var lastPayloadLength: UInt32 = 0
        for srtp in packets {
            let rtp = try rx.unprotect(srtp)
            XCTAssertEqual(rtp.count, srtp.count - 10)
            XCTAssertEqual(rtp[0] >> 6, 2, "RTP version")
            XCTAssertEqual(rtp[1] & 0x7F, 0, "payload type 0 = PCMU")
            let seq = UInt16(rtp[2]) << 8 | UInt16(rtp[3])
            let ts = UInt32(rtp[4]) << 24 | UInt32(rtp[5]) << 16 | UInt32(rtp[6]) << 8 | UInt32(rtp[7])
            let s = UInt32(rtp[8]) << 24 | UInt32(rtp[9]) << 16 | UInt32(rtp[10]) << 8 | UInt32(rtp[11])
            let payload = rtp[12...]
            if let lastSeq { XCTAssertEqual(seq, lastSeq &+ 1, "consecutive sequence numbers") }
            // PCMU is one byte per 8 kHz sample: the timestamp advances by the previous payload's length.
            if let lastTimestamp { XCTAssertEqual(ts &- lastTimestamp, lastPayloadLength, "RTP timestamp step") }
            if let ssrc { XCTAssertEqual(s, ssrc) }
            XCTAssertTrue((1...170).contains(payload.count), "payload of \(payload.count) bytes")
            lastPayloadLength = UInt32(payload.count)
            lastSeq = seq
            lastTimestamp = ts
            ssrc = s
            samples += payload.map(Self.decodeMuLaw)
        }
        // The decrypted audio is the tone: loud, and ~880 zero crossings per second.
        let seconds = Double(samples.count) / 8000
        let crossings = zip(samples, samples.dropFirst()).filter { ($0 < 0) != ($1 < 0) }.count
        XCTAssertEqual(Double(crossings) / seconds, 880, accuracy: 40, "zero crossings per second")
        XCTAssertGreaterThan(samples.map(abs).max() ?? 0, 3000, "a tone, not silence or noise floor")

        // ffmpeg's SRTCP: at least one sender report (PT 200) from the same SSRC.
        let rtcpPackets = rtcpSocket.drain()
        XCTAssertFalse(rtcpPackets.isEmpty, "ffmpeg sends an RTCP SR")
        for srtcp in rtcpPackets {
            let rtcp = try rx.unprotect(srtcp, rtcp: true)
            XCTAssertEqual(rtcp[0] >> 6, 2)
            XCTAssertEqual(rtcp[1], 200, "sender report")
            XCTAssertEqual(UInt32(rtcp[4]) << 24 | UInt32(rtcp[5]) << 16 | UInt32(rtcp[6]) << 8 | UInt32(rtcp[7]), ssrc)
        }

        // The same packets under a different key are all refused.
        let wrong = try SRTPContext(material: .random(), direction: .inbound)
        for srtp in packets.prefix(5) {
            XCTAssertThrowsError(try wrong.unprotect(srtp)) { XCTAssertEqual($0 as? SRTPError, .authenticationFailed) }
        }
    }

    /// The other direction: Parley protects, ffmpeg (libavformat's RTP
    /// demuxer with its own SRTP code) decrypts. ffmpeg reads an SDP with our
    /// key as an RFC 4568 crypto attribute, we send 6 s of a 440 Hz PCMU tone
    /// (made by ffmpeg) as SRTP, and ffmpeg writes the first second of audio
    /// it decrypted. Only readiness is waited for (ffmpeg's socket appearing
    /// in /proc/net/udp); the timeouts are hang guards.
    func testParleyToFFmpegSRTP() throws {
        let ffmpeg = "/usr/bin/ffmpeg"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: ffmpeg), "ffmpeg missing")
        let tone = try run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
                                    "-i", "sine=frequency=440:sample_rate=8000:duration=6", "-f", "mulaw", "-"])
        XCTAssertEqual(tone.count, 48_000)

        let material = SRTPKeyMaterial.random(suite: .aesCM128HmacSHA1_80)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-srtp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("out.raw")

        // Two adjacent free ports for ffmpeg (RTP and RTCP), released for it
        // to bind. Another process on the machine may take one of them
        // between the release and ffmpeg's bind; ffmpeg then exits with a
        // bind error, and the test tries again with new ports (at most 3).
        var started: (process: Process, port: UInt16, stderr: Pipe)?
        var failures: [String] = []
        for _ in 0..<3 where started == nil {
            let port: UInt16 = try { () throws -> UInt16 in
                let (rtp, _) = try receiverPair()
                return rtp.port
            }()
            let sdp = """
                v=0
                o=- 0 0 IN IP4 127.0.0.1
                s=parley
                c=IN IP4 127.0.0.1
                t=0 0
                m=audio \(port) RTP/SAVP 0
                a=rtpmap:0 PCMU/8000
                \(material.cryptoAttribute(tag: 1))

                """
            let sdpURL = dir.appendingPathComponent("in.sdp")
            try sdp.write(to: sdpURL, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ffmpeg)
            p.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-protocol_whitelist", "file,udp,rtp",
                           "-i", sdpURL.path, "-t", "1", "-f", "mulaw", "-y", outURL.path]
            p.standardOutput = FileHandle.nullDevice
            let errPipe = Pipe()
            p.standardError = errPipe
            try p.run()
            if Self.waitForUDPBind(port: port, while: { p.isRunning }) {
                started = (p, port, errPipe)
            } else {
                if p.isRunning { p.terminate() }
                p.waitUntilExit()
                failures.append("port \(port): " + String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
            }
        }
        let (p, port, errPipe) = try XCTUnwrap(started, "ffmpeg never bound its RTP port: \(failures)")
        let guardTimer = DispatchWorkItem { if p.isRunning { p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: guardTimer)
        defer { guardTimer.cancel() }

        let tx = try SRTPContext(material: material, direction: .outbound)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = port.bigEndian
        to.sin_addr.s_addr = inet_addr("127.0.0.1")
        var seq: UInt16 = 65_500                  // crosses the wrap: ROC 1 for most of the stream
        for (n, start) in stride(from: 0, to: tone.count, by: 160).enumerated() {
            var rtp = SRTPContextTests.rtpPacket(seq: seq, ssrc: 0x5EED_0001, timestamp: UInt32(n * 160),
                                                 payload: Array(tone[start..<start + 160]))
            rtp[1] = 0                            // payload type 0 (PCMU)
            let srtp = try tx.protect(rtp)
            let sent = srtp.withUnsafeBytes { b in
                withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            XCTAssertEqual(sent, srtp.count)
            seq &+= 1
        }
        p.waitUntilExit()
        let stderr = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, stderr)

        let audio = [UInt8]((try? Data(contentsOf: outURL)) ?? Data())
        XCTAssertGreaterThanOrEqual(audio.count, 7_000, "about one second of PCMU decrypted by ffmpeg")
        let samples = audio.map(Self.decodeMuLaw)
        let seconds = Double(samples.count) / 8000
        let crossings = zip(samples, samples.dropFirst()).filter { ($0 < 0) != ($1 < 0) }.count
        XCTAssertEqual(Double(crossings) / max(seconds, 0.001), 880, accuracy: 40, "ffmpeg decrypted the tone")
        XCTAssertGreaterThan(samples.map(abs).max() ?? 0, 3000)
    }

    /// Waits (hang guard 30 s) until a UDP socket bound to `port` appears in
    /// /proc/net/udp, or `alive` turns false. Lines look like
    /// "  12: 0100007F:1F90 00000000:0000 07 …" (local address second).
    static func waitForUDPBind(port: UInt16, while alive: () -> Bool) -> Bool {
        let suffix = String(format: ":%04X", port)
        for _ in 0..<3000 where alive() {
            let table = (try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8)) ?? ""
            if table.split(separator: "\n").contains(where: { $0.split(separator: " ").dropFirst().first?.hasSuffix(suffix) == true }) {
                return true
            }
            usleep(10_000)
        }
        return false
    }

    /// G.711 μ-law to linear PCM (ITU-T G.711).
    static func decodeMuLaw(_ byte: UInt8) -> Int {
        let u = ~byte
        let sign = u & 0x80
        let exponent = Int((u >> 4) & 0x07)
        let mantissa = Int(u & 0x0F)
        let magnitude = ((mantissa << 3) + 0x84) << exponent
        return sign != 0 ? 0x84 - magnitude : magnitude - 0x84
    }
}
