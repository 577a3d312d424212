import Foundation
import XCTest
@testable import ParleyTranscode

/// One transcode of the sample and the checks a player and ffprobe would
/// make on it. Each test class below makes one fixture (class-level setUp)
/// and runs every check on it, so the sample is encoded once per format.
final class LadderFixture: @unchecked Sendable {
    let format: SegmentFormat
    let result: TranscodeResult
    let dir: URL
    let progress: [TranscodeProgress]

    init(format: SegmentFormat, ladder: String) throws {
        self.format = format
        let base = Support.tempDir("ladder-\(format.rawValue)")
        var o = TranscodeOptions(input: Support.sample, output: base.appendingPathComponent("out").path)
        o.ladder = ladder
        o.format = format
        o.preset = "superfast"  // the tests check structure and timing, not compression
        let t = Transcoder(options: o)
        final class Seen: @unchecked Sendable { var list: [TranscodeProgress] = [] }
        let seen = Seen()
        t.onProgress = { seen.list.append($0) }
        result = try t.run()
        dir = base.appendingPathComponent("out")
        progress = seen.list
    }

    func playlist(_ path: String) -> String { Support.read(dir.appendingPathComponent(path)) }

    func rungNames() -> [String] { result.video.map(\.name) }

    /// init (fMP4) + every segment of a rung concatenated, with each segment's byte offset.
    func joined(_ rung: String) throws -> (file: URL, starts: [Int], sizes: [Int]) {
        let rdir = dir.appendingPathComponent(rung)
        var files: [URL] = []
        if format == .fmp4 { files.append(rdir.appendingPathComponent("init.mp4")) }
        let segs = Support.uris(playlist("\(rung)/index.m3u8")).map { rdir.appendingPathComponent($0) }
        XCTAssertFalse(segs.isEmpty)
        var offset = try files.first.map { try Data(contentsOf: $0).count } ?? 0
        var starts: [Int] = [], sizes: [Int] = []
        for s in segs {
            let n = try Data(contentsOf: s).count
            starts.append(offset); sizes.append(n)
            offset += n
        }
        let out = dir.deletingLastPathComponent().appendingPathComponent("\(rung)-joined.\(format == .fmp4 ? "mp4" : "ts")")
        try Support.concat(files + segs, to: out)
        return (out, starts, sizes)
    }

    /// Every segment of every rung starts with a keyframe, at the same
    /// timestamps in every rung, one segment length apart (ffprobe).
    func checkEverySegmentStartsWithAlignedKeyframe() throws {
        let frame = 1 / result.frameRate
        var reference: [Double]?
        for rung in rungNames() {
            let j = try joined(rung)
            let packets = try Support.videoPackets(j.file.path)
            XCTAssertFalse(packets.isEmpty)
            var starts: [Double] = []
            for (i, s) in j.starts.enumerated() {
                let end = s + j.sizes[i]
                let inSeg = packets.filter { $0.pos >= s && $0.pos < end }.sorted { $0.pos < $1.pos }
                guard let first = inSeg.first else { XCTFail("\(rung) segment \(i) has no video packet"); continue }
                XCTAssertTrue(first.key, "\(rung) segment \(i) does not start with a keyframe")
                XCTAssertEqual(inSeg.filter(\.key).count, 1, "\(rung) segment \(i): one IDR per segment")
                starts.append(first.pts)
            }
            for (i, t) in starts.enumerated() {
                XCTAssertEqual(t - starts[0], Double(i) * result.segmentSeconds, accuracy: frame / 2, "\(rung) segment \(i) start")
            }
            if let ref = reference {
                XCTAssertEqual(ref.count, starts.count, "\(rung): segment count differs")
                for (a, b) in zip(ref, starts) { XCTAssertEqual(a, b, accuracy: 0.001, "\(rung): keyframe times differ") }
            } else {
                reference = starts
            }
        }
        XCTAssertEqual(reference?.count, 3, "12 s in 4 s segments")
    }

    /// Each segment lasts the segment length within one frame (except the
    /// last); EXTINF sums equal the real duration within one frame.
    func checkSegmentDurationsAndExtinfSum() throws {
        let frame = 1 / result.frameRate
        let source = try Support.videoDuration(Support.sample)
        XCTAssertGreaterThan(source, 11)
        for rung in rungNames() {
            let d = Support.extinfs(playlist("\(rung)/index.m3u8"))
            XCTAssertEqual(d.count, 3)
            for (i, x) in d.dropLast().enumerated() {
                XCTAssertEqual(x, result.segmentSeconds, accuracy: frame, "\(rung) segment \(i)")
            }
            XCTAssertLessThanOrEqual(d.last!, result.segmentSeconds + frame)
            XCTAssertEqual(d.reduce(0, +), source, accuracy: frame, "\(rung): EXTINF sum vs source duration")
            // And the ladder itself is that long (ffprobe of the joined rung).
            let j = try joined(rung)
            XCTAssertEqual(try Support.videoDuration(j.file.path), source, accuracy: frame * 1.5, "\(rung): rendition duration")
            let target = playlist("\(rung)/index.m3u8").split(separator: "\n").first { $0.hasPrefix("#EXT-X-TARGETDURATION:") }
            XCTAssertEqual(target.flatMap { Int($0.dropFirst(22)) }, 4)
        }
    }

    /// Bitrates measured from the files are within 10 % of AVERAGE-BANDWIDTH,
    /// and the peak segment within 10 % of BANDWIDTH.
    func checkMeasuredBitratesMatchMasterPlaylist() throws {
        let master = playlist("master.m3u8")
        let audioSegs = Support.uris(playlist("audio/index.m3u8"))
        let audioSizes = try audioSegs.map { try Data(contentsOf: dir.appendingPathComponent("audio/\($0)")).count }
        let audioDur = Support.extinfs(playlist("audio/index.m3u8"))
        let lines = master.split(separator: "\n").map(String.init)
        var checked = 0
        for (i, line) in lines.enumerated() where line.hasPrefix("#EXT-X-STREAM-INF:") {
            let attrs = Support.attributes(line)
            let uri = lines[i + 1]
            let rung = String(uri.split(separator: "/").first!)
            let segs = Support.uris(playlist(uri))
            let sizes = try segs.map { try Data(contentsOf: dir.appendingPathComponent("\(rung)/\($0)")).count }
            let durs = Support.extinfs(playlist(uri))
            let total = durs.reduce(0, +)
            let measured = Double(sizes.reduce(0, +) + audioSizes.reduce(0, +)) * 8 / total
            let average = try XCTUnwrap(attrs["AVERAGE-BANDWIDTH"].flatMap(Double.init))
            XCTAssertEqual(measured, average, accuracy: average * 0.10, "\(rung) average")
            var peak = 0.0
            for k in sizes.indices {
                let v = Double(sizes[k]) * 8 / durs[k]
                let a = k < audioSizes.count ? Double(audioSizes[k]) * 8 / audioDur[k] : 0
                peak = max(peak, v + a)
            }
            let bandwidth = try XCTUnwrap(attrs["BANDWIDTH"].flatMap(Double.init))
            XCTAssertEqual(peak, bandwidth, accuracy: bandwidth * 0.10, "\(rung) peak")
            // Capped VBR: the encoder stays near its rung's target.
            // (fMP4 only: MPEG-TS packet overhead is large at 145 kb/s.)
            let rungResult = try XCTUnwrap(result.video.first { $0.name == rung })
            if format == .fmp4 { XCTAssertLessThan(Double(rungResult.averageBitRate), Double(rungResult.targetBitRate) * 1.25, "\(rung) over target") }
            checked += 1
        }
        XCTAssertEqual(checked, rungNames().count)
    }

    /// ffmpeg reads the master playlist and decodes every rung and the audio.
    func checkFFmpegDecodesMasterAndEveryRung() throws {
        let master = dir.appendingPathComponent("master.m3u8").path
        let probe = try Support.run("ffprobe", ["-v", "error", "-show_entries", "stream=codec_type,width,height", "-of", "csv=p=0", master])
        XCTAssertEqual(probe.status, 0, probe.stderr)
        // ffprobe lists streams once per variant program: count distinct renditions.
        let videoLines = Set(probe.stdout.split(separator: "\n").filter { $0.hasPrefix("video") }.map(String.init))
        XCTAssertEqual(videoLines.count, rungNames().count, probe.stdout)
        for v in result.video { XCTAssertTrue(videoLines.contains { $0 == "video,\(v.width),\(v.height)" }, "\(v.name) missing") }
        XCTAssertTrue(probe.stdout.contains("audio"))
        let decode = try Support.run("ffmpeg", ["-v", "error", "-nostdin", "-i", master, "-map", "0", "-f", "null", "-"])
        XCTAssertEqual(decode.status, 0, decode.stderr)
        XCTAssertEqual(decode.stderr.trimmingCharacters(in: .whitespacesAndNewlines), "", "decode errors")
    }

    /// The master has the attributes players need; media playlists are VOD.
    func checkPlaylistTags() throws {
        let master = playlist("master.m3u8")
        XCTAssertTrue(master.hasPrefix("#EXTM3U\n"))
        XCTAssertTrue(master.contains("#EXT-X-INDEPENDENT-SEGMENTS"))
        XCTAssertTrue(master.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\""))
        let inf = master.split(separator: "\n").filter { $0.hasPrefix("#EXT-X-STREAM-INF:") }.map { Support.attributes(String($0)) }
        XCTAssertEqual(inf.count, rungNames().count)
        for a in inf {
            for k in ["BANDWIDTH", "AVERAGE-BANDWIDTH", "CODECS", "RESOLUTION", "FRAME-RATE", "AUDIO"] { XCTAssertNotNil(a[k], k) }
            XCTAssertTrue(a["CODECS"]!.hasPrefix("avc1.64"), "High profile: \(a["CODECS"]!)")
            XCTAssertTrue(a["CODECS"]!.hasSuffix(",mp4a.40.2"))
            XCTAssertEqual(a["FRAME-RATE"], "30.000")
        }
        let iframe = master.split(separator: "\n").filter { $0.hasPrefix("#EXT-X-I-FRAME-STREAM-INF:") }
        XCTAssertEqual(iframe.count, rungNames().count)
        for rung in rungNames() {
            let p = playlist("\(rung)/index.m3u8")
            XCTAssertTrue(p.contains("#EXT-X-PLAYLIST-TYPE:VOD"))
            XCTAssertTrue(p.hasSuffix("#EXT-X-ENDLIST\n"))
            XCTAssertEqual(p.contains("#EXT-X-MAP:URI=\"init.mp4\""), format == .fmp4)
            let ip = playlist("\(rung)/iframes.m3u8")
            XCTAssertTrue(ip.contains("#EXT-X-I-FRAMES-ONLY"))
            XCTAssertEqual(ip.components(separatedBy: "#EXT-X-BYTERANGE:").count - 1, 3)
        }
    }

    /// Each I-frame playlist byte range holds exactly one intra frame.
    func checkIFramePlaylistRangesHoldOneKeyframe() throws {
        let rung = rungNames().last!
        let rdir = dir.appendingPathComponent(rung)
        let lines = playlist("\(rung)/iframes.m3u8").split(separator: "\n").map(String.init)
        let initData = format == .fmp4 ? try Data(contentsOf: rdir.appendingPathComponent("init.mp4")) : Data()
        for (i, line) in lines.enumerated() where line.hasPrefix("#EXT-X-BYTERANGE:") {
            let spec = line.dropFirst(17).split(separator: "@")
            let length = Int(spec[0])!, offset = Int(spec[1])!
            let seg = try Data(contentsOf: rdir.appendingPathComponent(lines[i + 1]))
            XCTAssertLessThan(length, seg.count)
            let o = try Support.run("ffprobe", ["-v", "error", "-show_entries", "frame=pict_type,key_frame", "-of", "csv=p=0", "-"],
                                    stdin: initData + seg.subdata(in: offset..<(offset + length)))
            let frames = o.stdout.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(frames.count, 1, "\(lines[i + 1]): \(o.stdout) \(o.stderr)")
            XCTAssertTrue(frames.first?.hasPrefix("1,I") ?? false, "\(lines[i + 1]): \(frames)")
        }
    }

    /// manifest.json describes every rung and segment; thumbnails are JPEGs.
    func checkManifestAndThumbnails() throws {
        let data = try Data(contentsOf: dir.appendingPathComponent("manifest.json"))
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rends = try XCTUnwrap(doc["renditions"] as? [[String: Any]])
        XCTAssertEqual(rends.count, rungNames().count + 1)
        for r in rends {
            let segs = try XCTUnwrap(r["segments"] as? [[String: Any]])
            XCTAssertEqual(segs.count, 3)
            for (i, s) in segs.enumerated() {
                XCTAssertEqual(s["index"] as? Int, i)
                let file = try XCTUnwrap(s["file"] as? String)
                let bytes = try XCTUnwrap(s["bytes"] as? Int)
                XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent(file)).count, bytes)
                let dur = try XCTUnwrap(s["duration"] as? Double)
                XCTAssertEqual(Double(try XCTUnwrap(s["bitrate"] as? Int)), Double(bytes) * 8 / dur, accuracy: 1)
                XCTAssertEqual(try XCTUnwrap(s["start"] as? Double), Double(i) * 4, accuracy: 0.05)
                let thumb = try XCTUnwrap(s["thumbnail"] as? String)
                let jpeg = try Data(contentsOf: dir.appendingPathComponent(thumb))
                XCTAssertEqual(Array(jpeg.prefix(3)), [0xFF, 0xD8, 0xFF], "JPEG magic")
            }
        }
        // Progress was reported, increasing, ending at 100 %.
        let p = progress
        XCTAssertFalse(p.isEmpty)
        XCTAssertEqual(p.last?.fraction ?? 0, 1, accuracy: 0.001)
        XCTAssertEqual(p.map(\.frames), p.map(\.frames).sorted())
        // The JSON summary parses and names the output.
        let summary = try JSONSerialization.jsonObject(with: Data(Summary.json(result).utf8)) as? [String: Any]
        XCTAssertEqual(summary?["ok"] as? Bool, true)
        XCTAssertEqual((summary?["renditions"] as? [Any])?.count, rungNames().count + 1)
        // Nothing partial is left next to the output.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: dir.deletingLastPathComponent().path)
        XCTAssertFalse(siblings.contains { $0.contains(".partial-") }, "\(siblings)")
    }
}

final class LadderFMP4Tests: XCTestCase {
    nonisolated(unsafe) static var fixture: Result<LadderFixture, Error>?

    override class func setUp() {
        super.setUp()
        if fixture == nil { fixture = Result { try LadderFixture(format: .fmp4, ladder: "720p:3000k,360p:365k,234p:145k") } }
    }

    func fx() throws -> LadderFixture { try XCTUnwrap(Self.fixture).get() }

    func testEverySegmentStartsWithAlignedKeyframe() throws { try fx().checkEverySegmentStartsWithAlignedKeyframe() }
    func testSegmentDurationsAndExtinfSum() throws { try fx().checkSegmentDurationsAndExtinfSum() }
    func testMeasuredBitratesMatchMasterPlaylist() throws { try fx().checkMeasuredBitratesMatchMasterPlaylist() }
    func testFFmpegDecodesMasterAndEveryRung() throws { try fx().checkFFmpegDecodesMasterAndEveryRung() }
    func testPlaylistTags() throws { try fx().checkPlaylistTags() }
    func testIFramePlaylistRangesHoldOneKeyframe() throws { try fx().checkIFramePlaylistRangesHoldOneKeyframe() }
    func testManifestAndThumbnails() throws { try fx().checkManifestAndThumbnails() }
}

final class LadderTSTests: XCTestCase {
    nonisolated(unsafe) static var fixture: Result<LadderFixture, Error>?

    override class func setUp() {
        super.setUp()
        if fixture == nil { fixture = Result { try LadderFixture(format: .ts, ladder: "360p:365k,234p:145k") } }
    }

    func fx() throws -> LadderFixture { try XCTUnwrap(Self.fixture).get() }

    func testEverySegmentStartsWithAlignedKeyframe() throws { try fx().checkEverySegmentStartsWithAlignedKeyframe() }
    func testSegmentDurationsAndExtinfSum() throws { try fx().checkSegmentDurationsAndExtinfSum() }
    func testMeasuredBitratesMatchMasterPlaylist() throws { try fx().checkMeasuredBitratesMatchMasterPlaylist() }
    func testFFmpegDecodesMasterAndEveryRung() throws { try fx().checkFFmpegDecodesMasterAndEveryRung() }
    func testPlaylistTags() throws { try fx().checkPlaylistTags() }
    func testIFramePlaylistRangesHoldOneKeyframe() throws { try fx().checkIFramePlaylistRangesHoldOneKeyframe() }
    func testManifestAndThumbnails() throws { try fx().checkManifestAndThumbnails() }
}
