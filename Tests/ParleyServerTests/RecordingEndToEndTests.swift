import XCTest
import Foundation
import Synchronization
import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySRTP
import ParleyRecord
import ParleyAuth
import ParleyTestSupport
@testable import ParleyServer
@testable import ParleyProtocol

/// A recorded call with publishers nobody here wrote: ffmpeg sends Opus
/// tones (one through a lossy, reordering proxy) with keys from `parley
/// sdp`, and VP8 and H.264 video, through the relay into a room being recorded. After
/// stop, the automatic export is judged by ffprobe (streams, durations
/// against the call), ffmpeg (it decodes), Goertzel (every tone in the mix,
/// when it was sent) and tshark (the capture files dissect cleanly); with
/// `record-grid` on, the two video publishers share a `grid.webm` of the
/// configured size lasting the whole call. And a
/// `parley serve` SIGKILLed mid-call leaves a recording `parley record
/// export` turns into a file that plays up to the kill.
final class RecordingEndToEndTests: XCTestCase {
    var fx: RelayServerFixture!

    override func setUpWithError() throws {
        for tool in ["ffmpeg", "ffprobe", "tshark"] {
            try XCTSkipIf(!FileManager.default.isExecutableFile(atPath: "/usr/bin/" + tool), "\(tool) is not installed (tools/setup)")
        }
    }

    override func tearDown() { fx?.stop() }

    func testFFmpegPublishersIntoARecordedRoomExportToFilesThatPlayWithEveryToneInTheMix() throws {
        fx = try RelayServerFixture(recording: true) {
            $0.recordGrid = true
            ($0.recordGridWidth, $0.recordGridHeight) = (640, 240)
        }
        // Someone with the rec grant starts the recording before anyone publishes.
        let rec = try fx.connect()
        try rec.call(.auth(token: fx.token("rec", publish: false, record: true), room: nil))
        _ = try rec.call(.join(room: nil, publish: false, subscribe: false, suite: nil))
        let id = try XCTUnwrap(try rec.call(.startRecording())["recording"]?.stringValue)
        let dir = fx.dataDir + "/recordings/" + id

        // Two tones through `parley sdp`: 440 Hz straight, 880 Hz through 5 % loss and reordering, a second later.
        let (s440, ff440) = try publishTone(name: "tone440", hz: 440, seconds: 4)
        let proxy = try LossyProxy(lossRate: 0.05, reorderRate: 0.05, seed: 17)
        // VP8 video from ffmpeg with the join's SRTP key, on the video SSRC granted.
        let cam = try fx.connect()
        try cam.call(.auth(token: fx.token("cam"), room: nil))
        let joinCam = try cam.call(.join(room: nil, publish: true, subscribe: false, suite: nil))
        let videoSSRC = UInt32(try XCTUnwrap(joinCam["ssrcs"]?["video"]?.intValue))
        try cam.call(.publish([.video(ssrc: videoSSRC)]))
        let camKey = String(try XCTUnwrap(joinCam["srtp"]?["send"]?.stringValue).dropFirst("inline:".count))
        let camPort = try XCTUnwrap(joinCam["media"]?["port"]?.intValue)
        let ffcam = try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=3",
                                "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-g", "25",
                                "-payload_type", "96", "-ssrc", String(videoSSRC), "-f", "rtp",
                                "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", camKey,
                                "srtp://127.0.0.1:\(camPort)?rtcpport=\(camPort)&pkt_size=1200"])
        // H.264 video from ffmpeg (libx264, RFC 6184 packetization mode 1: single NAL units and FU-A), the same way.
        let cam264 = try fx.connect()
        try cam264.call(.auth(token: fx.token("cam264"), room: nil))
        let join264 = try cam264.call(.join(room: nil, publish: true, subscribe: false, suite: nil))
        let ssrc264 = UInt32(try XCTUnwrap(join264["ssrcs"]?["video"]?.intValue))
        try cam264.call(.publish([TrackDescription(kind: .video, codec: "H264", payloadType: 102, clockRate: 90000, ssrc: ssrc264)]))
        let key264 = String(try XCTUnwrap(join264["srtp"]?["send"]?.stringValue).dropFirst("inline:".count))
        let port264 = try XCTUnwrap(join264["media"]?["port"]?.intValue)
        let ff264 = try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=3",
                                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline", "-b:v", "300k",
                                "-g", "25", "-pix_fmt", "yuv420p",
                                "-payload_type", "102", "-ssrc", String(ssrc264), "-f", "rtp",
                                "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", key264,
                                "srtp://127.0.0.1:\(port264)?rtcpport=\(port264)&pkt_size=1200"])
        // The second tone waits until the first has reached the recording: the mix must show it starting later.
        let file440 = dir + "/track-tone440_\(s440.ssrc).pcapng"
        waitUntil("the 440 Hz tone is being recorded") { ((try? CaptureReader.read(path: file440))?.packets.count ?? 0) >= 50 }
        let (s880, ff880) = try publishTone(name: "tone880", hz: 880, seconds: 3, via: proxy)
        for p in [ff440, ff880, ffcam, ff264] { p.waitUntilExit() }
        XCTAssertEqual([ff440, ff880, ffcam, ff264].map(\.terminationStatus), [0, 0, 0, 0], "ffmpeg published")
        proxy.stop()

        try rec.call(.stopRecording())
        let exported = ["tone440.webm", "tone880.webm", "cam.webm", "cam264.mkv", "mix.ogg", "grid.webm"].map { dir + "/" + $0 }
        waitUntil("the export has written every file", timeout: 120) {
            exported.allSatisfy { FileManager.default.fileExists(atPath: $0) }
                && MetricsRegistry.shared.counter("parley_record_exports_total", help: "", labels: [("result", "ok")]).current > 0
                && (try? probe(dir + "/mix.ogg"))?.duration ?? 0 > 0
        }
        let index = try RecordingIndex.read(directory: dir)
        XCTAssertEqual(Set(index.participants), ["rec", "tone440", "tone880", "cam", "cam264"])
        let start = Double(index.startedAtMillis) / 1000

        // What the relay received of each publisher, in its capture file.
        func captured(_ t: RoomTrack) throws -> (first: Double, count: Int) {
            let rtp = try CaptureReader.read(path: dir + "/" + t.captureFile).packets.filter { !$0.isRTCP }
            return (Double(rtp.first!.arrivalNanos) / 1e9 - start, rtp.count)
        }
        let track = { (p: String) in index.tracks.first { $0.participant == p }! }
        // Each file lasts as long as its publisher's call (what ffmpeg was told to send), within 2 %.
        var placed: [String: (start: Double, end: Double)] = [:]
        for (name, stream, seconds) in [("tone440", "audio:opus", 4.0), ("tone880", "audio:opus", 3.0), ("cam", "video:vp8", 3.0),
                                        ("cam264", "video:h264", 3.0)] {
            let t = track(name)
            let file = dir + "/" + name + (stream == "video:h264" ? ".mkv" : ".webm")
            XCTAssertFalse(index.clockMappings[t.id]?.isEmpty ?? true, "\(name): ffmpeg's sender reports were recorded")
            let p = try probe(file)
            XCTAssertEqual(p.streams, [stream], name)
            XCTAssertEqual(p.duration - p.start, seconds, accuracy: 0.02 * seconds, "\(name): \(p)")
            // On the recording's clock it starts no later than its first packet arrived (placed by the sender's clock).
            let first = try captured(t).first
            XCTAssertLessThanOrEqual(p.start, first + 0.005, name)
            XCTAssertGreaterThan(p.start, first - 0.5, name)
            placed[name] = (p.start, p.duration)
            // Decodes from end to end (the lossy one too).
            let decoded = try runTool("ffmpeg", ["-v", "error", "-i", file, "-f", "null", "-"])
            XCTAssertEqual(decoded.status, 0, decoded.err)
            XCTAssertEqual(decoded.err, "", "\(name) decodes without errors")
        }
        // The composite: both video publishers (VP8 and H.264) side by side on
        // the configured canvas, the mix as its sound, as long as the call (the
        // recording's clock from its start to the last publisher's end), within 2 %.
        let grid = dir + "/grid.webm"
        let g = try probe(grid)
        XCTAssertEqual(g.streams, ["audio:opus", "video:vp8"])
        let call = placed.values.map(\.end).max()!
        XCTAssertEqual(g.duration, call, accuracy: 0.02 * call, "grid.webm lasts the call: \(g), \(placed)")
        let size = try runTool("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0", grid])
        XCTAssertEqual(size.out.trimmingCharacters(in: .whitespacesAndNewlines), "640,240")
        let decodedGrid = try runTool("ffmpeg", ["-v", "error", "-i", grid, "-f", "null", "-"])
        XCTAssertEqual(decodedGrid.status, 0, decodedGrid.err)
        XCTAssertEqual(decodedGrid.err, "", "grid.webm decodes without errors")

        let (forwarded, dropped) = proxy.counts
        XCTAssertGreaterThan(dropped, 0, "the proxy dropped some of the 880 Hz packets")
        XCTAssertEqual(try captured(track("tone880")).count, forwarded, "every 880 Hz packet that reached the relay was recorded")

        // The mix: each tone present while its publisher sent it, and the later one absent before it started.
        let mix = try decodePCM(dir + "/mix.ogg")
        func level(_ hz: Double, at t: Double) -> Double {
            let from = max(0, Int(t * 48_000)), to = min(mix.count, from + 4_800)
            return from < to ? toneAmplitude(mix[from..<to], hz: hz) : 0
        }
        let a440 = placed["tone440"]!, a880 = placed["tone880"]!
        XCTAssertGreaterThan(a880.start, a440.start + 0.5, "the 880 Hz tone started after the 440 Hz one")
        var t = a440.start + 0.2
        while t < a440.end - 0.3 {
            XCTAssertGreaterThan(level(440, at: t), 0.04, "440 Hz at \(t) s")
            t += 0.25
        }
        t = a880.start + 0.2
        while t < a880.end - 0.3 {
            // 5 % of its 20 ms packets are gone: a 100 ms window keeps most of the tone.
            XCTAssertGreaterThan(level(880, at: t), 0.02, "880 Hz at \(t) s")
            t += 0.25
        }
        t = a440.start + 0.2
        while t < a880.start - 0.3 {
            XCTAssertLessThan(level(880, at: t), 0.01, "no 880 Hz at \(t) s, before it was sent")
            t += 0.25
        }

        // tshark reads every capture file: RTP on 5004, RTCP on 5005, nothing malformed.
        for tr in index.tracks {
            let text = try tshark(path: dir + "/" + tr.captureFile, ["-d", "udp.port==5004,rtp", "-d", "udp.port==5005,rtcp", "-V"])
            assertCleanDissection(text)
            XCTAssertTrue(text.contains("Real-Time Transport Protocol"), tr.id)
            XCTAssertTrue(text.contains("Sender Report") || text.contains("Sender report"), tr.id)
        }
        for c in [rec, cam, cam264, s440.client, s880.client] { c.close() }
    }

    /// A Chromium simulcast publisher (tools/interop/browser_media.py) in a
    /// recorded room: a subscriber switches low, high, low, then the
    /// publisher turns its upper layers off. The relay records the highest
    /// layer sent, switched at keyframes as a subscriber's, so the recorded
    /// picture changes size: the export and the grid decode without a word
    /// from ffmpeg, and the export's frames have more than one width, the
    /// lowest layer's last.
    func testAChromiumSimulcastPublisherIsRecordedAcrossItsSizeChanges() throws {
        fx = try chromiumFixture(recording: true) {
            $0.recordGrid = true
            ($0.recordGridWidth, $0.recordGridHeight) = (320, 180)
        }
        let rec = try fx.connect()
        try rec.call(.auth(token: fx.token("rec", room: "simrec", publish: false, record: true), room: nil))
        _ = try rec.call(.join(room: nil, publish: false, subscribe: false, suite: nil))
        let id = try XCTUnwrap(try rec.call(.startRecording())["recording"]?.stringValue)
        let dir = fx.dataDir + "/recordings/" + id
        let result = try runBrowserScript("tools/interop/browser_media.py", fx, ["simulcast", "--room", "simrec", "--top-off"])
        let exports = MetricsRegistry.shared.counter("parley_record_exports_total", help: "", labels: [("result", "ok")])
        let before = exports.current
        try rec.call(.stopRecording())
        let files = [dir + "/pub.webm", dir + "/grid.webm"]
        waitUntil("the export has written pub.webm and grid.webm", timeout: 120) {
            exports.current > before && files.allSatisfy { FileManager.default.fileExists(atPath: $0) }
        }
        // Every frame decodes. Chromium's frames come at a varying rate (its fake camera's 20 fps,
        // 42-51 ms apart): ffmpeg's null output would time them in ticks of a constant rate it
        // guesses from the file (241/12), where two can fall on one tick ("non monotonically
        // increasing dts"), so each frame keeps its own time, in the file's milliseconds
        // (passthrough, the input's time base); the file's own times must increase.
        for f in files {
            let decoded = try runTool("ffmpeg", ["-v", "error", "-i", f, "-fps_mode", "passthrough", "-enc_time_base:v", "-1",
                                                 "-f", "null", "-"])
            XCTAssertEqual(decoded.status, 0, decoded.err)
            XCTAssertEqual(decoded.err, "", "\(f) decodes without errors")
        }
        let frames = try runTool("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts,width",
                                             "-of", "csv=p=0", dir + "/pub.webm"])
        let rows = frames.out.split(separator: "\n").map { $0.split(separator: ",").compactMap { Int($0) } }.filter { $0.count == 2 }
        let times = rows.map { $0[0] }, widths = rows.map { $0[1] }
        XCTAssertEqual(times, times.sorted(), "frame times increase")
        XCTAssertEqual(Set(times).count, times.count, "no two frames at one time")
        var runs: [(width: Int, frames: Int)] = []
        for w in widths {
            if runs.last?.width == w { runs[runs.count - 1].frames += 1 } else { runs.append((w, 1)) }
        }
        let sent = result["topOff"]?["sent"]?["outbound"]?.arrayValue ?? []
        let lowest = try XCTUnwrap(sent.first { $0["rid"]?.stringValue == "q" }?["frameWidth"]?.intValue, "\(result)")
        XCTAssertGreaterThan(Set(widths).count, 1, "the recorded picture changes size: \(runs)")
        XCTAssertGreaterThan(widths.max() ?? 0, lowest, "an upper layer recorded: \(runs)")
        XCTAssertEqual(runs.last?.width, lowest, "the lowest layer last: \(runs)")
        print("simulcast recording: \(widths.count) frames, widths in order \(runs.map { "\($0.width)x\($0.frames)" }); "
              + "the subscriber decoded \(result["widths"]?.arrayValue?.compactMap(\.intValue) ?? []); "
              + "q keyframe after the top went: \(result["topOff"]?["qKeyframe"]?.boolValue ?? false)")
        rec.close()
    }

    /// `parley serve` (a child process) recording a room is SIGKILLed while
    /// ffmpeg publishes; `parley record export` makes a file that plays and
    /// reaches to within a second of the kill.
    func testAfterTheServerIsKilledMidCallTheExportPlaysUpToTheKill() throws {
        let dataDir = tempDir("record-kill")
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let (server, lines, _) = try startServe(dataDir: dataDir, extra: ["--record-rooms", "call"])
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() } }
        let ws = try XCTUnwrap(lines.first { $0.hasPrefix("listening ws ") }).split(separator: " ")[2]
        let secret = try ServerSecret.loadOrCreate(dataDir: dataDir)
        let now = Int64(Date().timeIntervalSince1970)
        var o = SDPSession.Options()
        o.server = "ws://\(ws)"
        o.token = JWT.sign(TokenClaims(subject: "voice", room: "call", issuedAt: now, expiresAt: now + 600, canPublish: true), secret: secret)
        let group = try EventLoopGroup(numberOfThreads: 1, logger: quietLogger)
        defer { group.syncShutdownGracefully() }
        let session = try SDPSession.open(loop: group.loops[0], o)
        XCTAssertEqual(try session.client.nextEvent("recording_started")["room"]?.stringValue, "call", "record-rooms matched")
        let ssrc = try XCTUnwrap(session.track?["ssrc"]?.intValue)
        let ff = try ffmpegPublishing(session, hz: 440, seconds: 20)
        defer { if ff.isRunning { ff.terminate(); ff.waitUntilExit() } }

        let recordings = dataDir + "/recordings"
        var dir = ""
        waitUntil("two seconds of the tone are on disk") {
            guard let id = (try? FileManager.default.contentsOfDirectory(atPath: recordings))?.first else { return false }
            dir = recordings + "/" + id
            return ((try? CaptureReader.read(path: dir + "/track-voice_\(ssrc).pcapng"))?.packets.count ?? 0) >= 100
        }
        kill(server.processIdentifier, SIGKILL)
        let killedAt = Date().timeIntervalSince1970
        server.waitUntilExit()
        ff.terminate()
        ff.waitUntilExit()

        let out = try runTool(parleyBinary, ["record", "export", dir])
        XCTAssertEqual(out.status, 0, out.err)
        let start = Double(try RecordingIndex.read(directory: dir).startedAtMillis) / 1000
        let p = try probe(dir + "/voice.webm")
        XCTAssertEqual(p.streams, ["audio:opus"])
        XCTAssertGreaterThan(p.duration, killedAt - start - 1, "the file reaches to within 1 s of the kill")
        XCTAssertLessThanOrEqual(p.duration, killedAt - start + 0.1)
        let decoded = try runTool("ffmpeg", ["-v", "error", "-i", dir + "/voice.webm", "-f", "null", "-"])
        XCTAssertEqual(decoded.status, 0, decoded.err)
        let mix = try decodePCM(dir + "/mix.ogg")
        let end = Int((killedAt - start - 1.2) * 48_000)
        XCTAssertGreaterThan(toneAmplitude(mix[max(0, end - 4_800)..<min(mix.count, end)], hz: 440), 0.04,
                             "the tone is in the mix up to a second before the kill")
        session.client.close()
    }

    // MARK: Publishers

    /// `parley sdp` in-process for `name`, and ffmpeg sending a tone with its key and SSRC (to the relay, or through `proxy`).
    private func publishTone(name: String, hz: Int, seconds: Int, via proxy: LossyProxy? = nil) throws
        -> (session: (client: BlockingSignallingClient, ssrc: Int), ffmpeg: Process) {
        var o = SDPSession.Options()
        o.server = fx.wsURL
        o.token = fx.token(name)
        let session = try SDPSession.open(loop: fx.group.loops[0], o)
        let ssrc = try XCTUnwrap(session.track?["ssrc"]?.intValue)
        if let proxy {
            let port = try XCTUnwrap(session.join["media"]?["port"]?.intValue)
            proxy.start(to: SocketAddress.ipv4Loopback(port: UInt16(port)))
        }
        return ((session.client, ssrc), try ffmpegPublishing(session, hz: hz, seconds: seconds, port: proxy.map { Int($0.port) }))
    }

    private func ffmpegPublishing(_ session: SDPSession, hz: Int, seconds: Int, port: Int? = nil) throws -> Process {
        let lines = session.sdp.split(separator: "\r\n").map(String.init)
        let (_, key) = try SRTPKeyMaterial.parse(cryptoAttribute: try XCTUnwrap(lines.first { $0.hasPrefix("a=crypto:") }))
        let relayPort = try XCTUnwrap(lines.first { $0.hasPrefix("m=audio ") }.map { String($0.split(separator: " ")[1]) })
        let to = port.map(String.init) ?? relayPort
        return try ffmpeg(["-f", "lavfi", "-i", "sine=frequency=\(hz):sample_rate=48000:duration=\(seconds)",
                           "-c:a", "libopus", "-b:a", "64k", "-payload_type", "111",
                           "-ssrc", String(try XCTUnwrap(session.track?["ssrc"]?.intValue)), "-f", "rtp",
                           "-srtp_out_suite", key.suite.sdesName, "-srtp_out_params", String(key.inlineKeyParams.dropFirst("inline:".count)),
                           "srtp://127.0.0.1:\(to)?rtcpport=\(to)"])
    }

    private func ffmpeg(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
        p.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-re"] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }
}

/// A UDP hop between ffmpeg and the relay that drops a share of the RTP
/// packets and swaps neighbours (RTCP passes untouched), from a fixed seed.
final class LossyProxy: @unchecked Sendable {
    let port: UInt16
    private let inbound: Int32
    private let outbound: Int32
    private let lossRate: Double
    private let reorderRate: Double
    private var rng: UInt64
    private struct State {
        var target: SocketAddress?
        var stopped = false
        var forwardedRTP = 0
        var droppedRTP = 0
    }
    private let state = Mutex(State())
    private let done = DispatchSemaphore(value: 0)

    var target: SocketAddress? {
        get { state.withLock { $0.target } }
        set { state.withLock { $0.target = newValue } }
    }
    /// RTP packets passed on, and dropped.
    var counts: (forwarded: Int, dropped: Int) { state.withLock { ($0.forwardedRTP, $0.droppedRTP) } }

    init(lossRate: Double, reorderRate: Double, seed: UInt64) throws {
        func udp() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            precondition(fd >= 0 && SocketAddress.ipv4Loopback(port: 0).withSockAddr { Glibc.bind(fd, $0, $1) } == 0)
            return fd
        }
        let fd = udp()
        inbound = fd
        outbound = udp()
        var a = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: a.sin_port)
        self.lossRate = lossRate
        self.reorderRate = reorderRate
        rng = seed
    }

    /// Starts forwarding (on a thread of its own) to `target`.
    func start(to target: SocketAddress) {
        self.target = target
        Thread { [self] in run(); done.signal() }.start()
    }

    private func random() -> Double {
        rng &+= 0x9E37_79B9_7F4A_7C15
        var z = rng
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) % 10_000) / 10_000
    }

    private func run() {
        var held: [UInt8]?
        var buf = [UInt8](repeating: 0, count: 2048)
        while true {
            let (target, stopped) = state.withLock { ($0.target, $0.stopped) }
            if stopped { return }
            var p = pollfd(fd: inbound, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) == 1 else { continue }
            let n = recv(inbound, &buf, buf.count, 0)
            guard n > 0, let target else { continue }
            let d = Array(buf[0..<n])
            func send(_ b: [UInt8]) { _ = b.withUnsafeBytes { x in target.withSockAddr { sendto(outbound, x.baseAddress, x.count, 0, $0, $1) } } }
            let isRTP = d.count >= 12 && !(192...223).contains(d[1])
            if isRTP && random() < lossRate { state.withLock { $0.droppedRTP += 1 }; continue }
            if isRTP { state.withLock { $0.forwardedRTP += 1 } }
            if isRTP && held == nil && random() < reorderRate { held = d; continue }
            send(d)
            if let h = held { send(h); held = nil }
        }
    }

    /// Stops forwarding and waits for the thread.
    func stop() {
        state.withLock { $0.stopped = true }
        done.wait()
    }

    deinit {
        close(inbound)
        close(outbound)
    }
}
