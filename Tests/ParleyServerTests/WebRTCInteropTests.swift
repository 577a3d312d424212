import COpus
import Foundation
import ParleyCore
import ParleyRelay
import ParleyIO
import ParleyRTP
import ParleySRTP
import ParleyTestSupport
import XCTest
@testable import ParleyProtocol
@testable import ParleyServer

/// WebRTC peers nobody here wrote (aiortc, tools/interop/webrtc_peer.py)
/// join rooms through `offer` on the signalling WebSocket: ICE-lite, then
/// DTLS-SRTP on the relay's media port, then media both ways, with SDES
/// participants (ffmpeg through `parley sdp`, a Parley client) in the same
/// room.
final class WebRTCInteropTests: XCTestCase {
    var fx: RelayServerFixture!
    let script = repositoryPath("tools/interop/webrtc_peer.py")

    override func setUpWithError() throws {
        let probe = try runTool("python3", ["-c", "import aiortc, websockets"])
        try XCTSkipIf(probe.status != 0, "aiortc is not installed (tools/setup)")
        // With a TCP media port: the answers carry an ICE-TCP passive candidate
        // too, which aiortc (aioice: no TCP host candidates) must pass over for UDP.
        fx = try RelayServerFixture(tcp: RelayTCPConfig())
    }

    override func tearDown() { fx?.stop() }

    private func counter(_ name: String, _ labels: MetricLabels = []) -> Int {
        MetricsRegistry.shared.counter(name, help: "", labels: labels).current
    }

    /// Runs webrtc_peer.py to its end and returns its JSON summary.
    private func runPeer(_ user: String, seconds: Int, tone: Int, video: Bool = true) throws -> JSONValue {
        try Self.runPeer(script: script, url: fx.wsURL, token: fx.token(user), user: user, seconds: seconds, tone: tone, video: video)
    }

    private static func runPeer(script: String, url: String, token: String, user: String, seconds: Int, tone: Int,
                                video: Bool = true) throws -> JSONValue {
        var args = [script, url, token, "--seconds", "\(seconds)", "--tone", "\(tone)"]
        if !video { args.append("--no-video") }
        let r = try runTool("python3", args, timeout: Double(seconds) + 60)
        XCTAssertEqual(r.status, 0, "\(user): \(r.out)\n\(r.err)")
        let line = r.out.split(separator: "\n").last.map(String.init) ?? ""
        return try XCTUnwrap(try? JSONValue.parse(line), "\(user) printed no summary: \(r.out)\n\(r.err)")
    }

    /// The mixed room: ffmpeg publishes a 440 Hz Opus tone over SDES
    /// (`parley sdp`), aiortc joins with an SDP offer, publishes an 880 Hz
    /// tone and VP8, and decodes ffmpeg's tone (its payload type rewritten
    /// to the one aiortc negotiated); a Parley SDES client decodes aiortc's
    /// tone with libopus.
    func testAiortcAndSDESParticipantsHearEachOther() throws {
        let dtlsBefore = counter("parley_relay_dtls_handshakes_total", [("result", "connected")])
        let rewritesBefore = counter("parley_relay_payload_type_rewrites_total")

        // The SDES receiver joins first and latches its address.
        let carol = try fx.connect()
        try carol.call(.auth(token: fx.token("carol", publish: false), room: nil))
        let join = try carol.call(.join(room: nil, publish: false, subscribe: true, suite: nil))
        let carolMedia = try MediaPeer(join: join)
        XCTAssertTrue(carolMedia.bind(ufrag: join["ice"]!["ufrag"]!.stringValue!, password: join["ice"]!["pwd"]!.stringValue!))

        // ffmpeg publishes over SDES for longer than the aiortc peer stays.
        var o = SDPSession.Options()
        o.server = fx.wsURL
        o.token = fx.token("ffmpeg")
        let session = try SDPSession.open(loop: fx.group.loops[0], o)
        let ffmpeg = try startFFmpegOpusTone(session, hertz: 440, seconds: 30)
        defer { if ffmpeg.isRunning { ffmpeg.terminate() }; ffmpeg.waitUntilExit() }
        _ = try carol.nextEvent("track_published") // ffmpeg's

        // carol subscribes to aiortc's audio when it is published, and decodes it.
        let decoded = LockedBox<[Int16]>([])
        let carolDone = Gate()
        let media = LockedBox(carolMedia)
        let carolThread = Thread {
            let carolMedia = media.get()
            defer { carolDone.open() }
            // aiortc publishes audio and video: take the audio one.
            var audio: JSONValue?
            for _ in 0..<2 where audio == nil {
                guard let t = try? carol.nextEvent("track_published", timeout: 30)["track"] else { return }
                if t["kind"]?.stringValue == "audio" { audio = t }
            }
            guard let audio, let id = audio["id"]?.stringValue, (try? carol.call(.subscribe(track: id))) != nil,
                  let pt = audio["payloadType"]?.intValue else { return }
            var err: Int32 = 0
            guard let decoder = opus_decoder_create(48000, 1, &err) else { return }
            defer { opus_decoder_destroy(decoder) }
            var pcm: [Int16] = []
            while pcm.count < 48000 * 2, let packet = try? carolMedia.receiveRTP(timeout: 10) {
                guard Int(packet[1] & 0x7f) == pt else { continue }
                // Past CSRCs and header extensions (aiortc sends the ones the answer negotiated).
                guard let payload = packet.withUnsafeBytes({ b in (try? RTPPacketView(parsing: b)).map { Array($0.payload) } }) else { continue }
                var frame = [Int16](repeating: 0, count: 5760)
                let n = payload.withUnsafeBufferPointer { opus_decode(decoder, $0.baseAddress, Int32($0.count), &frame, 5760, 0) }
                if n > 0 { pcm += frame[0..<Int(n)] }
            }
            decoded.set(pcm)
        }
        carolThread.start()

        let summary = try runPeer("aiortc", seconds: 5, tone: 880)
        carolDone.wait()
        XCTAssertEqual(summary["dtls"]?.stringValue, "connected", "\(summary)")
        XCTAssertGreaterThan(summary["loud_frames"]?.intValue ?? 0, 25, "aiortc decoded ffmpeg's tone: \(summary)")
        XCTAssertEqual(Double(summary["audio_hz"]?.intValue ?? 0), 440, accuracy: 15, "\(summary)")
        XCTAssertGreaterThan(counter("parley_relay_dtls_handshakes_total", [("result", "connected")]), dtlsBefore)
        XCTAssertGreaterThan(counter("parley_relay_payload_type_rewrites_total"), rewritesBefore,
                             "ffmpeg's payload type 111 reached aiortc as the one it offered")

        let pcm = decoded.get()
        XCTAssertGreaterThan(pcm.count, 48000, "carol decoded at least a second of aiortc's Opus")
        let mid = Array(pcm[min(pcm.count, 12000)..<min(pcm.count, 60000)])
        var crossings = 0
        for i in 1..<max(1, mid.count) where mid[i - 1] < 0 && mid[i] >= 0 { crossings += 1 }
        XCTAssertEqual(Double(crossings), 880, accuracy: 20, "an 880 Hz tone came through from aiortc")
        carol.close()
        session.client.close()
    }

    /// Two aiortc peers in one room receive each other's audio and VP8 video.
    func testTwoAiortcPeersExchangeAudioAndVideo() throws {
        let connectedBefore = counter("parley_relay_dtls_handshakes_total", [("result", "connected")])
        let first = LockedBox<JSONValue?>(nil)
        let done = Gate()
        let (script, url, token) = (script, fx.wsURL, fx.token("alice"))
        let t = Thread {
            first.set(try? Self.runPeer(script: script, url: url, token: token, user: "alice", seconds: 7, tone: 440))
            done.open()
        }
        t.start()
        // bob joins once alice is in the room (her tracks are then in his join reply).
        waitUntil("alice's DTLS connected") {
            counter("parley_relay_dtls_handshakes_total", [("result", "connected")]) > connectedBefore
        }
        let bob = try runPeer("bob", seconds: 5, tone: 880)
        done.wait()
        let alice = try XCTUnwrap(first.get())
        XCTAssertEqual(Double(bob["audio_hz"]?.intValue ?? 0), 440, accuracy: 15, "\(bob)")
        XCTAssertEqual(Double(alice["audio_hz"]?.intValue ?? 0), 880, accuracy: 15, "\(alice)")
        XCTAssertGreaterThan(bob["video_frames"]?.intValue ?? 0, 10, "\(bob)")
        XCTAssertGreaterThan(alice["video_frames"]?.intValue ?? 0, 10, "\(alice)")
    }
}

/// A value shared between a test's threads.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func set(_ v: T) { lock.withLock { value = v } }
    func get() -> T { lock.withLock { value } }
}
