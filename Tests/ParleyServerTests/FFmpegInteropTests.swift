import ParleyRTP
import XCTest
import ParleyTestSupport
import Foundation
import COpus
import ParleyCore
import ParleyIO
import ParleySRTP
@testable import ParleyServer
@testable import ParleyProtocol

/// Interop with tools nobody here wrote: ffmpeg publishes an Opus tone into a
/// room as SRTP with the key and SSRC from `parley sdp`, and a Parley client
/// receives it through the relay, decrypts it with its own key and decodes a
/// 440 Hz tone with libopus.
final class FFmpegInteropTests: XCTestCase {
    var fx: RelayServerFixture!

    override func setUpWithError() throws {
        try XCTSkipIf(!FileManager.default.isExecutableFile(atPath: "/usr/bin/ffmpeg"), "ffmpeg is not installed (tools/setup)")
        fx = try RelayServerFixture()
    }

    override func tearDown() { fx?.stop() }

    func testFFmpegPublishesOpusToneAsSRTPAndParleyClientDecodesIt() throws {
        // The receiver joins first and latches its address.
        let carol = try fx.connect()
        try carol.call(.auth(token: fx.token("carol", publish: false), room: nil))
        let join = try carol.call(.join(room: nil, publish: false, subscribe: true, suite: nil))
        let peer = try MediaPeer(join: join)
        XCTAssertTrue(peer.bind(ufrag: join["ice"]!["ufrag"]!.stringValue!, password: join["ice"]!["pwd"]!.stringValue!))

        // `parley sdp` for ffmpeg: publishes a track and describes it.
        var o = SDPSession.Options()
        o.server = fx.wsURL
        o.token = fx.token("ffmpeg")
        let session = try SDPSession.open(loop: fx.group.loops[0], o)
        let sdp = session.sdp
        let ssrc = try XCTUnwrap(session.track?["ssrc"]?.intValue)
        XCTAssertTrue(sdp.contains("a=ssrc:\(ssrc) "), sdp)
        let cryptoLine = try XCTUnwrap(sdp.split(separator: "\r\n").first { $0.hasPrefix("a=crypto:") })
        let (_, material) = try SRTPKeyMaterial.parse(cryptoAttribute: String(cryptoLine))
        let port = try XCTUnwrap(sdp.split(separator: "\r\n").first { $0.hasPrefix("m=audio ") }?.split(separator: " ")[1])

        let published = try carol.nextEvent("track_published")
        XCTAssertEqual(published["track"]?["ssrc"]?.intValue, ssrc)
        try carol.call(.subscribe(track: published["track"]!["id"]!.stringValue!))

        let params = String(material.inlineKeyParams.dropFirst("inline:".count))
        let rtcpLatches = MetricsRegistry.shared.counter("parley_relay_rtcp_latches_total", help: "").current
        let ffmpeg = Process()
        ffmpeg.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
        ffmpeg.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
                            "-c:a", "libopus", "-b:a", "64k", "-payload_type", "111", "-ssrc", String(ssrc),
                            "-f", "rtp", "-srtp_out_suite", material.suite.sdesName, "-srtp_out_params", params,
                            "srtp://127.0.0.1:\(port)?rtcpport=\(port)"]
        let errPipe = Pipe()
        ffmpeg.standardError = errPipe
        ffmpeg.standardOutput = FileHandle.nullDevice
        try ffmpeg.run()

        // Receive, decrypt (carol's receive key) and decode until ffmpeg is done.
        var err: Int32 = 0
        let decoder = try XCTUnwrap(opus_decoder_create(48000, 1, &err))
        defer { opus_decoder_destroy(decoder) }
        var pcm: [Int16] = []
        var packets = 0
        var lastSeq: Int?
        let deadline = Date().addingTimeInterval(60) // hang guard only
        while Date() < deadline {
            // Keep reading until ffmpeg has exited and nothing more arrives.
            let running = ffmpeg.isRunning
            guard let packet = try peer.receiveRTP(timeout: running ? 2 : 1) else {
                if running { continue } else { break }
            }
            XCTAssertEqual(Int(ssrcOf(packet)), ssrc)
            XCTAssertEqual(packet[1] & 0x7f, 111)
            let seq = Int(packet[2]) << 8 | Int(packet[3])
            if let l = lastSeq { XCTAssertEqual(seq, (l + 1) & 0xffff, "in order, none lost on loopback") }
            lastSeq = seq
            packets += 1
            let cc = Int(packet[0] & 0x0f)
            let payload = Array(packet[(12 + 4 * cc)...])
            var frame = [Int16](repeating: 0, count: 5760)
            let n = payload.withUnsafeBufferPointer { p in
                opus_decode(decoder, p.baseAddress, Int32(p.count), &frame, 5760, 0)
            }
            XCTAssertGreaterThan(n, 0, "libopus decodes what ffmpeg encoded")
            if n > 0 { pcm += frame[0..<Int(n)] }
        }
        ffmpeg.waitUntilExit()
        let ffmpegErr = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(ffmpeg.terminationStatus, 0, ffmpegErr)
        XCTAssertGreaterThanOrEqual(packets, 90, "2 s of 20 ms Opus frames")

        // The tone: count rising zero crossings over the middle second.
        let mid = Array(pcm[min(pcm.count, 24000)..<min(pcm.count, 72000)])
        var crossings = 0
        for i in 1..<mid.count where mid[i - 1] < 0 && mid[i] >= 0 { crossings += 1 }
        XCTAssertEqual(Double(crossings), 440, accuracy: 10, "a 440 Hz tone came through")
        // ffmpeg's SRTCP sender report comes from its RTP port + 1: it latched ffmpeg's RTCP address.
        XCTAssertGreaterThan(MetricsRegistry.shared.counter("parley_relay_rtcp_latches_total", help: "").current, rtcpLatches)
        carol.close()
        session.client.close()
    }

    /// `parley sdp --receive TRACK`: the SDP names a local port that the relay
    /// has latched and the key it protects with; a tool that binds that port
    /// (here a plain UDP socket standing in for ffmpeg) decrypts the track.
    func testSDPReceiveModeDescribesALatchedPortAndTheReceiveKey() throws {
        let (alice, joinA, ssrc, session) = try publishOpusAndOpenReceiver(viewer: "viewer")
        let lines = session.sdp.split(separator: "\r\n").map(String.init)
        XCTAssertTrue(lines.contains("a=recvonly"), session.sdp)
        XCTAssertTrue(lines.contains("a=rtpmap:111 opus/48000/2"), session.sdp)
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("m=audio ") }.flatMap { UInt16($0.split(separator: " ")[1]) })
        let (_, key) = try SRTPKeyMaterial.parse(cryptoAttribute: try XCTUnwrap(lines.first { $0.hasPrefix("a=crypto:") }))

        // Bind the port the SDP names, as the tool would.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        XCTAssertEqual(SocketAddress.ipv4Loopback(port: port).withSockAddr { Glibc.bind(fd, $0, $1) }, 0)
        let receiver = try SRTPContext(material: key, direction: .inbound)

        let publisher = try MediaPeer(join: joinA)
        let sent = try publisher.sendNext(ssrc: ssrc)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var got: [UInt8]?
        while poll(&p, 1, 10_000) == 1 {
            var buf = [UInt8](repeating: 0, count: 2048)
            let n = recv(fd, &buf, buf.count, 0)
            guard n >= 12, buf[1] & 0x7f == 111 else { continue } // skip RTCP
            got = try receiver.unprotect(Array(buf[0..<n]))
            break
        }
        XCTAssertEqual(got, sent)
        session.client.close()
        alice.close()
    }

    /// ffmpeg receives: `parley sdp --receive` writes the SDP, ffmpeg opens
    /// it (SRTP from a=crypto), and decodes the Opus tone a Parley client
    /// publishes through the relay.
    func testFFmpegReceivesAndDecodesATrackWithTheSDPFromParleySDP() throws {
        let (alice, joinA, ssrc, session) = try publishOpusAndOpenReceiver(viewer: "ffplay")
        let (status, pcm, ffErr) = try receiveWithFFmpeg(session, publisher: joinA, ssrc: ssrc, seconds: 1)
        XCTAssertEqual(status, 0, ffErr)
        guard pcm.count >= 36000 else { return XCTFail("only \(pcm.count) samples decoded") }
        XCTAssertEqual(Double(risingZeroCrossings(pcm[12000..<36000])), 220, accuracy: 10, "ffmpeg decoded the 440 Hz tone")
        session.client.close()
        alice.close()
    }

    /// #14: ffmpeg reading the SDP of `parley sdp --receive` sends nothing to
    /// the relay (its RTCP goes to its own port + 1), so the relay ended the
    /// session after `participant-timeout` and ffmpeg stalled. The session's
    /// pings now keep it: with the timeout at 5 s, ffmpeg receives for 15 s.
    func testFFmpegReceiverOutlivesTheParticipantTimeout() throws {
        fx.stop()
        fx = try RelayServerFixture(participantTimeout: .seconds(5))
        let (alice, joinA, ssrc, session) = try publishOpusAndOpenReceiver(viewer: "ffplay")
        let seconds = 15
        let (status, pcm, ffErr) = try receiveWithFFmpeg(session, publisher: joinA, ssrc: ssrc, seconds: seconds)
        XCTAssertEqual(status, 0, ffErr)
        XCTAssertGreaterThanOrEqual(pcm.count, 48000 * (seconds - 1), "ffmpeg got the whole \(seconds) s, past the 5 s timeout")
        if pcm.count >= 48000 * (seconds - 1) {
            // The tone is there in the last seconds too, not silence after a stall.
            let tail = pcm[(pcm.count - 36000)..<(pcm.count - 12000)]
            XCTAssertEqual(Double(risingZeroCrossings(tail)), 220, accuracy: 10)
        }
        XCTAssertNil(try? alice.nextEvent("participant_left", timeout: 0), "the viewer was never timed out")
        session.client.close()
        alice.close()
    }

    /// Runs ffmpeg on the session's SDP for `seconds` of output while the
    /// publisher (a Parley client) sends a paced 440 Hz Opus tone. Returns
    /// ffmpeg's exit status, the decoded 48 kHz mono samples and its stderr.
    func receiveWithFFmpeg(_ session: SDPSession, publisher joinA: JSONValue, ssrc: UInt32,
                           seconds: Int) throws -> (Int32, [Int16], String) {
        let dir = tempDir("ffrecv")
        try session.sdp.write(toFile: dir + "/recv.sdp", atomically: true, encoding: .utf8)
        let ffmpeg = Process()
        ffmpeg.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
        ffmpeg.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-protocol_whitelist", "file,udp,rtp,srtp",
                            "-i", dir + "/recv.sdp", "-t", String(seconds), "-ac", "1", "-ar", "48000", "-y", dir + "/out.wav"]
        let errPipe = Pipe()
        ffmpeg.standardError = errPipe
        ffmpeg.standardOutput = FileHandle.nullDevice
        try ffmpeg.run()

        // Publish a 440 Hz Opus tone (20 ms frames, paced) until ffmpeg has its seconds.
        var err: Int32 = 0
        let enc = try XCTUnwrap(opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err))
        defer { opus_encoder_destroy(enc) }
        let peer = try MediaPeer(join: joinA)
        var sample = 0
        let deadline = Date().addingTimeInterval(Double(seconds) * 2 + 30) // hang guard
        while ffmpeg.isRunning && Date() < deadline {
            var pcm = [Int16](repeating: 0, count: 960)
            for k in 0..<960 { pcm[k] = Int16(8000 * sin(2 * Double.pi * 440 * Double(sample + k) / 48000)) }
            sample += 960
            var out = [UInt8](repeating: 0, count: 1500)
            let n = opus_encode(enc, pcm, 960, &out, 1500)
            XCTAssertGreaterThan(n, 0)
            peer.seq &+= 1
            var rtp: [UInt8] = [0x80, 111, UInt8(peer.seq >> 8), UInt8(peer.seq & 0xff)]
            for v in [UInt32(truncatingIfNeeded: sample), ssrc] {
                rtp += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
            }
            peer.send(try peer.sender.protect(rtp + out[0..<Int(n)]))
            usleep(20_000)
        }
        if ffmpeg.isRunning { ffmpeg.terminate() }
        ffmpeg.waitUntilExit()
        let ffErr = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard let wav = FileManager.default.contents(atPath: dir + "/out.wav") else { return (ffmpeg.terminationStatus, [], ffErr) }
        // 16-bit mono PCM after the "data" chunk header.
        let bytes = [UInt8](wav)
        guard bytes.count > 20, let data = (12..<(bytes.count - 8)).first(where: { bytes[$0..<($0 + 4)].elementsEqual("data".utf8) }) else {
            return (ffmpeg.terminationStatus, [], ffErr)
        }
        let pcm = Array(bytes[(data + 8)...]).withUnsafeBytes { Array($0.bindMemory(to: Int16.self)) }
        return (ffmpeg.terminationStatus, pcm, ffErr)
    }

    /// Rising zero crossings: 220 in 0.5 s of a 440 Hz tone.
    func risingZeroCrossings(_ pcm: ArraySlice<Int16>) -> Int {
        var crossings = 0
        for i in (pcm.startIndex + 1)..<pcm.endIndex where pcm[i - 1] < 0 && pcm[i] >= 0 { crossings += 1 }
        return crossings
    }

    /// Alice joins and publishes an Opus track; `viewer` runs `parley sdp
    /// --receive` on it. Returns Alice's connection, her join reply, the
    /// track's SSRC and the receiving SDP session.
    func publishOpusAndOpenReceiver(viewer: String) throws -> (BlockingSignallingClient, JSONValue, UInt32, SDPSession) {
        let alice = try fx.connect()
        try alice.call(.auth(token: fx.token("alice"), room: nil))
        let joinA = try alice.call(.join(room: nil, publish: true, subscribe: false, suite: nil))
        let pub = try alice.call(.publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)]))
        let track = pub["tracks"]!.arrayValue![0]
        var o = SDPSession.Options()
        o.server = fx.wsURL
        o.token = fx.token(viewer, publish: false)
        o.receiveTrack = track["id"]!.stringValue!
        return (alice, joinA, UInt32(track["ssrc"]!.intValue!), try SDPSession.open(loop: fx.group.loops[0], o))
    }

    func ssrcOf(_ d: [UInt8]) -> UInt32 { UInt32(d[8]) << 24 | UInt32(d[9]) << 16 | UInt32(d[10]) << 8 | UInt32(d[11]) }
}
