import Foundation
import ParleyCore
import ParleyMedia
import ParleyRecord
import ParleyRTP
import ParleyTestSupport
import XCTest

/// A room recorded from real encoders (libopus tones, libvpx and libx264
/// video), packetized like WebRTC senders, then exported and judged by
/// ffprobe, ffmpeg, tshark and a Goertzel detector.
final class ExportTests: XCTestCase {
    override class func setUp() { MediaLog.quiet() }

    struct Room {
        var dir: String
        var startNanos: Int64
    }

    /// Records `tracks` (each with the packets its sender sent) and `events`
    /// (offsets in seconds from the start), stops, and exports.
    func record(_ name: String, tracks: [(RoomTrack, (Int64) throws -> [Sent])], events: [(Double, RecordingEvent)] = [],
                options: ExportOptions = ExportOptions()) throws -> (Room, Exporter.Result) {
        let root = tempDir("record-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        var limits = RecordingLimits()
        limits.minFreeBytes = 0
        let stops = StopWaiter()
        let recorder = Recorder(directory: root, limits: limits, metrics: MetricsRegistry(), onStop: stops.callback)
        defer { recorder.shutdown() }
        let recording = try recorder.start(id: name, room: "room-\(name)")
        let dir = root + "/" + name
        let start = try RecordingIndex.read(directory: dir).startedAtMillis * 1_000_000
        var all: [Sent] = []
        var ssrcs: [[UInt8]: UInt32] = [:]
        for (t, make) in tracks {
            recording.add(t)
            for s in try make(start) { all.append(s); ssrcs[s.bytes] = t.ssrc }
        }
        for (offset, var e) in events {
            e.atMillis = start / 1_000_000 + Int64(offset * 1000)
            recording.note(e)
        }
        // Arrival order, as the relay's tap would see it (the sort is stable: impairments stay).
        all = all.enumerated().sorted { ($0.element.arrivalNanos, $0.offset) < ($1.element.arrivalNanos, $1.offset) }.map(\.element)
        feed(recording, { ssrcs[$0.bytes]! }, all)
        recording.stop()
        XCTAssertEqual(stops.wait(name), .requested)
        return (Room(dir: dir, startNanos: start), try Exporter.export(directory: dir, options: options))
    }

    func testARoomExportsOneFilePerParticipantAndAMixWithEveryToneAtItsTime() throws {
        let alice = Sender(ssrc: 0xA1, payloadType: 111, clockRate: 48_000)
        let aliceVideo = Sender(ssrc: 0xA2, payloadType: 96, clockRate: 90_000)
        let bob = Sender(ssrc: 0xB1, payloadType: 111, clockRate: 48_000, skew: -88.25)
        let carol = Sender(ssrc: 0xC1, payloadType: 111, clockRate: 48_000, skew: 7)
        let carolVideo = Sender(ssrc: 0xC2, payloadType: 102, clockRate: 90_000, skew: 7)
        let a440 = try opusTone(hz: 440, seconds: 4), b1000 = try opusTone(hz: 1000, seconds: 2), c2000 = try opusTone(hz: 2000, seconds: 3.5)
        let vp8 = try encodedVideo(codec: "libvpx", seconds: 4), h264 = try encodedVideo(codec: "libx264", seconds: 4)

        let (room, result) = try record("room", tracks: [
            (roomTrack("alice", 0xA1, "opus", payloadType: 111),
             { audioTrack(alice, packets: a440, startSeconds: 0, startNanos: $0) }),
            (roomTrack("alice", 0xA2, "VP8", payloadType: 96),
             { videoTrack(aliceVideo, frames: vp8, startSeconds: 0, startNanos: $0, packetize: { packetizeVP8($0) }) }),
            // Bob joins late and leaves early.
            (roomTrack("bob", 0xB1, "opus", payloadType: 111),
             { audioTrack(bob, packets: b1000, startSeconds: 1, startNanos: $0) }),
            (roomTrack("carol", 0xC1, "opus", payloadType: 111),
             { audioTrack(carol, packets: c2000, startSeconds: 0.5, startNanos: $0) }),
            (roomTrack("carol", 0xC2, "H264", payloadType: 102),
             { videoTrack(carolVideo, frames: h264, startSeconds: 0, startNanos: $0, packetize: { packetizeH264($0) }) }),
        ], events: [
            (0, RecordingEvent(.join, participant: "alice")), (0, RecordingEvent(.join, participant: "carol")),
            (1, RecordingEvent(.join, participant: "bob")), (3, RecordingEvent(.leave, participant: "bob")),
            // Carol mutes her microphone for half a second; her packets keep coming (comfort noise would), the mix drops them.
            (2.0, RecordingEvent(.mute, participant: "carol", track: RoomTrack.id(participant: "carol", ssrc: 0xC1))), (2.5, RecordingEvent(.unmute, participant: "carol", track: RoomTrack.id(participant: "carol", ssrc: 0xC1))),
        ])

        XCTAssertEqual(result.files.map { URL(fileURLWithPath: $0).lastPathComponent }, ["alice.webm", "bob.webm", "carol.mkv", "mix.ogg"])
        XCTAssertEqual(result.tornBytes, 0)
        let a = try probe(room.dir + "/alice.webm")
        XCTAssertEqual(a.streams, ["audio:opus", "video:vp8"])
        XCTAssertEqual(a.duration, 4.0, accuracy: 4.0 * 0.02)
        let b = try probe(room.dir + "/bob.webm")
        XCTAssertEqual(b.streams, ["audio:opus"])
        XCTAssertEqual(b.duration, 3.0, accuracy: 3.0 * 0.02, "bob's file ends where he left, on the room's clock")
        let c = try probe(room.dir + "/carol.mkv")
        XCTAssertEqual(c.streams, ["audio:opus", "video:h264"])
        XCTAssertEqual(c.duration, 4.0, accuracy: 4.0 * 0.02)
        let m = try probe(room.dir + "/mix.ogg")
        XCTAssertEqual(m.streams, ["audio:opus"])
        XCTAssertEqual(m.duration, 4.0, accuracy: 4.0 * 0.02)
        for f in ["alice.webm", "bob.webm", "carol.mkv", "mix.ogg"] {
            let r = try runTool("ffmpeg", ["-v", "error", "-i", room.dir + "/" + f, "-f", "null", "-"])
            XCTAssertEqual(r.status, 0)
            XCTAssertEqual(r.err, "", "\(f) decodes without errors")
        }

        // Each tone where (and only where) its speaker was audible, in 100 ms windows.
        let pcm = try decodePCM(room.dir + "/mix.ogg")
        func level(_ hz: Double, at seconds: Double) -> Double {
            let i = Int(seconds * 48_000)
            return toneAmplitude(pcm[max(0, i - 2400)..<min(pcm.count, i + 2400)], hz: hz)
        }
        let expectations: [(hz: Double, audible: [Double], silent: [Double])] = [
            (440, [0.2, 1.0, 2.0, 3.0, 3.8], []),
            (1000, [1.2, 2.0, 2.8], [0.3, 0.8, 3.3, 3.8]),
            (2000, [0.7, 1.5, 1.9, 2.7, 3.5, 3.9], [0.2, 2.15, 2.35]),
        ]
        for e in expectations {
            for t in e.audible { XCTAssertGreaterThan(level(e.hz, at: t), 0.15, "\(e.hz) Hz should sound at \(t) s") }
            for t in e.silent { XCTAssertLessThan(level(e.hz, at: t), 0.03, "\(e.hz) Hz should be silent at \(t) s") }
        }

        // tshark reads every capture file: RTP on 5004, RTCP on 5005, nothing malformed.
        for t in [roomTrack("alice", 0xA1, "opus", payloadType: 111), roomTrack("alice", 0xA2, "VP8", payloadType: 96),
                  roomTrack("carol", 0xC2, "H264", payloadType: 102)] {
            let text = try tshark(path: room.dir + "/" + t.captureFile, ["-d", "udp.port==5004,rtp", "-d", "udp.port==5005,rtcp", "-V"])
            XCTAssertTrue(text.contains("Real-Time Transport Protocol"), text.prefix(2000).description)
            XCTAssertTrue(text.contains("Sender Report"), "the SRs are in the capture")
            assertCleanDissection(text)
        }
    }

    /// H.264 with B-frames: frames arrive in decode order and their RTP
    /// timestamps (presentation times) go back and forth, with no decode
    /// time on the wire; the export keeps every frame and shows them 40 ms
    /// apart in order.
    func testH264WithBFramesKeepsEveryFrameInPresentationOrder() throws {
        let video = Sender(ssrc: 0xF2, payloadType: 102, clockRate: 90_000)
        let h264 = try encodedVideoWithTimes(codec: "libx264", seconds: 4, bFrames: 2)
        XCTAssertTrue(zip(h264, h264.dropFirst()).contains { $0.pts > $1.pts }, "the encoder made B-frames")
        let (room, _) = try record("bframes", tracks: [
            (roomTrack("fay", 0xF2, "H264", payloadType: 102),
             { videoTrack(video, frames: h264.map { ($0.data, $0.keyframe) }, timestamps: h264.map(\.pts), startSeconds: 0, startNanos: $0,
                          packetize: { packetizeH264($0) }) }),
        ])
        let p = try probe(room.dir + "/fay.mkv")
        XCTAssertEqual(p.streams, ["video:h264"])
        XCTAssertEqual(p.duration - p.start, 4.0, accuracy: 4.0 * 0.02)
        let r = try runTool("ffmpeg", ["-v", "error", "-i", room.dir + "/fay.mkv", "-f", "null", "-"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.err, "", "decodes without errors")
        let shown = try runTool("ffprobe", ["-v", "error", "-select_streams", "v", "-show_entries", "frame=best_effort_timestamp_time", "-of", "csv=p=0",
                                            room.dir + "/fay.mkv"])
        // (The first frame's time may print as N/A: Matroska stores no decode times, so ffprobe knows none for it.)
        let lines = shown.out.split(separator: "\n")
        XCTAssertEqual(lines.count, h264.count, "every frame decoded: \(lines)")
        let times = lines.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        XCTAssertGreaterThanOrEqual(times.count, h264.count - 1)
        for (a, b) in zip(times, times.dropFirst()) { XCTAssertEqual(b - a, 0.04, accuracy: 0.0015, "shown in order, 40 ms apart") }
    }

    /// The composite: two publishers of solid colours, the second (16:9)
    /// joining late and leaving early, side by side on a 320×240 canvas
    /// with the mix as the audio. ffprobe sees VP8 and Opus lasting the
    /// call; decoded pictures show each colour in its tile (aspect kept,
    /// black bars), and black where a publisher was not there.
    func testGridShowsEachPublisherInItsTileWhileThereWithTheMixAsAudio() throws {
        let aliceAudio = Sender(ssrc: 0x61, payloadType: 111, clockRate: 48_000)
        let aliceVideo = Sender(ssrc: 0x62, payloadType: 96, clockRate: 90_000)
        let bobVideo = Sender(ssrc: 0x72, payloadType: 96, clockRate: 90_000, skew: -40)
        // Limited-range YUV of a red and a blue.
        let red = (y: UInt8(81), u: UInt8(90), v: UInt8(240)), blue = (y: UInt8(41), u: UInt8(240), v: UInt8(110))
        let tone = try opusTone(hz: 440, seconds: 4)
        let a = try solidVP8(y: red.y, u: red.u, v: red.v, seconds: 4)
        let b = try solidVP8(y: blue.y, u: blue.u, v: blue.v, width: 320, height: 180, seconds: 2)
        var grid = GridOptions()
        grid.width = 320; grid.height = 240
        let (room, result) = try record("grid", tracks: [
            (roomTrack("alice", 0x61, "opus", payloadType: 111), { audioTrack(aliceAudio, packets: tone, startSeconds: 0, startNanos: $0) }),
            (roomTrack("alice", 0x62, "VP8", payloadType: 96),
             { videoTrack(aliceVideo, frames: a, startSeconds: 0, startNanos: $0, packetize: { packetizeVP8($0) }) }),
            (roomTrack("bob", 0x72, "VP8", payloadType: 96),
             { videoTrack(bobVideo, frames: b, startSeconds: 1, startNanos: $0, packetize: { packetizeVP8($0) }) }),
        ], events: [
            (0, RecordingEvent(.join, participant: "alice")), (1, RecordingEvent(.join, participant: "bob")),
            (3.05, RecordingEvent(.leave, participant: "bob")),
        ], options: ExportOptions(grid: grid))

        XCTAssertEqual(result.files.map { URL(fileURLWithPath: $0).lastPathComponent }, ["alice.webm", "bob.webm", "mix.ogg", "grid.webm"])
        XCTAssertEqual(result.tracksLeftOutOfGrid, 0)
        let p = try probe(room.dir + "/grid.webm")
        XCTAssertEqual(p.streams, ["audio:opus", "video:vp8"])
        XCTAssertEqual(p.duration, 4.0, accuracy: 4.0 * 0.02)
        let r = try runTool("ffmpeg", ["-v", "error", "-i", room.dir + "/grid.webm", "-f", "null", "-"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.err, "", "decodes without errors")

        let pictures = try decodePictures(room.dir + "/grid.webm")
        XCTAssertEqual(pictures.count, 60, "15 fps for 4 s")
        /// Mean (Y, U, V) of the 16×16 block centred on (x, y).
        func colour(at seconds: Double, _ x: Int, _ y: Int) -> (y: Double, u: Double, v: Double) {
            let pic = pictures.min { abs($0.time - seconds) < abs($1.time - seconds) }!
            func mean(_ plane: Int, _ cx: Int, _ cy: Int, _ half: Int) -> Double {
                let w = plane == 0 ? pic.width : pic.width / 2
                var sum = 0
                for yy in cy - half..<cy + half { for xx in cx - half..<cx + half { sum += Int(pic.planes[plane][yy * w + xx]) } }
                return Double(sum) / Double(4 * half * half)
            }
            return (mean(0, x, y, 8), mean(1, x / 2, y / 2, 4), mean(2, x / 2, y / 2, 4))
        }
        func assertColour(_ c: (y: Double, u: Double, v: Double), _ want: (y: UInt8, u: UInt8, v: UInt8), _ what: String,
                          line: UInt = #line) {
            XCTAssertEqual(c.y, Double(want.y), accuracy: 12, what, line: line)
            XCTAssertEqual(c.u, Double(want.u), accuracy: 12, what, line: line)
            XCTAssertEqual(c.v, Double(want.v), accuracy: 12, what, line: line)
        }
        let black = (y: UInt8(16), u: UInt8(128), v: UInt8(128))
        // Left tile (0..<160): alice, 4:3 fitted to 160×120 at y 60; right tile (160..<320): bob, 16:9 fitted to 160×90 at y 74.
        assertColour(colour(at: 0.5, 80, 120), red, "alice from the start")
        assertColour(colour(at: 0.5, 240, 120), black, "bob before he joined")
        assertColour(colour(at: 2.0, 80, 120), red, "alice")
        assertColour(colour(at: 2.0, 240, 120), blue, "bob while there")
        assertColour(colour(at: 2.0, 80, 20), black, "the bar above alice's picture")
        assertColour(colour(at: 2.0, 240, 40), black, "the bar above bob's picture")
        assertColour(colour(at: 3.6, 240, 120), black, "bob after he left")
        assertColour(colour(at: 3.6, 80, 120), red, "alice to the end")

        // The mix is the sound track: the tone throughout.
        let pcm = try decodePCM(room.dir + "/grid.webm")
        for t in [0.5, 2.0, 3.5] {
            let i = Int(t * 48_000)
            XCTAssertGreaterThan(toneAmplitude(pcm[i - 2400..<i + 2400], hz: 440), 0.15, "the mix's tone at \(t) s")
        }

        // Past the tile bound, later tracks are left out and counted.
        grid.maxTiles = 1
        let one = try Exporter.export(directory: room.dir, options: ExportOptions(grid: grid))
        XCTAssertEqual(one.tracksLeftOutOfGrid, 1)
    }

    func testWithFivePercentLossAndReorderingTheExportStillPlays() throws {
        let audio = Sender(ssrc: 0xD1, payloadType: 111, clockRate: 48_000)
        let video = Sender(ssrc: 0xD2, payloadType: 96, clockRate: 90_000)
        let tone = try opusTone(hz: 660, seconds: 4), vp8 = try encodedVideo(codec: "libvpx", seconds: 4)
        let (room, _) = try record("lossy", tracks: [
            (roomTrack("dave", 0xD1, "opus", payloadType: 111),
             { impair(audioTrack(audio, packets: tone, startSeconds: 0, startNanos: $0), lossRate: 0.05, reorderRate: 0.05, seed: 1) }),
            (roomTrack("dave", 0xD2, "vp8", payloadType: 96),
             { impair(videoTrack(video, frames: vp8, startSeconds: 0, startNanos: $0, packetize: { packetizeVP8($0, mtu: 1200) }),
                      lossRate: 0.05, reorderRate: 0.05, seed: 2) }),
        ])
        let d = try probe(room.dir + "/dave.webm")
        XCTAssertEqual(d.streams, ["audio:opus", "video:vp8"])
        XCTAssertEqual(d.duration, 4.0, accuracy: 4.0 * 0.02)
        // Broken frames were dropped, not written: the file decodes cleanly, with fewer frames than were sent.
        let r = try runTool("ffmpeg", ["-v", "error", "-i", room.dir + "/dave.webm", "-f", "null", "-"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.err, "")
        let count = try runTool("ffprobe", ["-v", "error", "-select_streams", "v", "-count_packets", "-show_entries", "stream=nb_read_packets",
                                           "-of", "csv=p=0", room.dir + "/dave.webm"])
        let frames = Int(count.out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        XCTAssertLessThan(frames, vp8.count)
        // Without retransmission a loss costs the rest of its group of pictures; the next keyframe brings the picture back.
        XCTAssertGreaterThan(frames, 0, "\(frames) of \(vp8.count) frames")
        let pcm = try decodePCM(room.dir + "/mix.ogg")
        XCTAssertGreaterThan(toneAmplitude(pcm[48_000..<52_800], hz: 660), 0.1)
    }
}

/// `parley record export DIR` as a user runs it: the real binary.
final class RecordCommandTests: XCTestCase {
    func testExportPrintsTheFilesAndExitCodesFollowTheConvention() throws {
        let root = tempDir("record-cli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var limits = RecordingLimits()
        limits.minFreeBytes = 0
        let stops = StopWaiter()
        let recorder = Recorder(directory: root, limits: limits, metrics: MetricsRegistry(), onStop: stops.callback)
        defer { recorder.shutdown() }
        let r = try recorder.start(id: "cli", room: "r")
        r.add(roomTrack("eve", 0xE1, "opus", payloadType: 111))
        let start = try RecordingIndex.read(directory: root + "/cli").startedAtMillis * 1_000_000
        feed(r, { _ in 0xE1 }, audioTrack(Sender(ssrc: 0xE1, payloadType: 111, clockRate: 48_000), packets: try opusTone(hz: 300, seconds: 1),
                                        startSeconds: 0, startNanos: start))
        r.stop()
        XCTAssertEqual(stops.wait("cli"), .requested)

        let ok = try runTool(parleyBinary, ["record", "export", root + "/cli"])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertEqual(ok.out, "\(root)/cli/eve.webm\n\(root)/cli/mix.ogg\n")
        XCTAssertEqual(try probe(root + "/cli/eve.webm").duration, 1.02, accuracy: 0.02, "a second of tone that arrived 20 ms after the start")

        let missing = try runTool(parleyBinary, ["record", "export", root + "/nope"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.err.split(separator: "\n").count, 1, missing.err)
        XCTAssertTrue(missing.err.hasPrefix("parley record export: open(\(root)/nope/index.json): No such file or directory"), missing.err)

        for usage in [["record"], ["record", "export"], ["record", "play", "x"], ["record", "export", "a", "b"], ["record", "--bogus"]] {
            XCTAssertEqual(try runTool(parleyBinary, usage).status, 2, "\(usage)")
        }
        // --enqueue: a record-export job for parley worker, once per recording, named by id only.
        let first = try runTool(parleyBinary, ["record", "export", "--enqueue", "cli", "--data-dir", root + "/var"])
        XCTAssertEqual(first.status, 0, first.err)
        XCTAssertNotNil(Int(first.out.trimmingCharacters(in: .whitespacesAndNewlines)), first.out)
        XCTAssertEqual(try runTool(parleyBinary, ["record", "export", "--enqueue", "cli", "--data-dir", root + "/var"]).out, first.out,
                       "the job already queued")
        XCTAssertEqual(try runTool(parleyBinary, ["record", "export", "--enqueue", root + "/cli"]).status, 2, "a path is no recording id")

        // --grid: grid.webm beside the rest when the recording has video; its bounds are usage errors.
        let v = try recorder.start(id: "cligrid", room: "r")
        v.add(roomTrack("eve", 0xE2, "VP8", payloadType: 96))
        let vstart = try RecordingIndex.read(directory: root + "/cligrid").startedAtMillis * 1_000_000
        feed(v, { _ in 0xE2 }, videoTrack(Sender(ssrc: 0xE2, payloadType: 96, clockRate: 90_000), frames: try solidVP8(y: 81, u: 90, v: 240, seconds: 1),
                                         startSeconds: 0, startNanos: vstart, packetize: { packetizeVP8($0) }))
        v.stop()
        XCTAssertEqual(stops.wait("cligrid"), .requested)
        let grid = try runTool(parleyBinary, ["record", "export", "--grid", "--grid-size", "320x180", root + "/cligrid"])
        XCTAssertEqual(grid.status, 0, grid.err)
        XCTAssertEqual(grid.out, "\(root)/cligrid/eve.webm\n\(root)/cligrid/grid.webm\n")
        XCTAssertEqual(try probe(root + "/cligrid/grid.webm").streams, ["video:vp8"], "no audio, no mix: video alone")
        for bad in [["--grid", "--grid-size", "4000x4000"], ["--grid", "--grid-size", "320"], ["--grid-size", "320x180"],
                    ["--grid", "--grid-max-tiles", "0"]] {
            XCTAssertEqual(try runTool(parleyBinary, ["record", "export"] + bad + [root + "/cligrid"]).status, 2, "\(bad)")
        }

        let help = try runTool(parleyBinary, ["record", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.out.contains("Usage: parley record export DIR"))
    }
}
