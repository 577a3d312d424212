import Foundation
import XCTest
@testable import ParleyTranscode

/// Sources a phone or an HDR camera makes: portrait video and PQ/HLG HDR.
/// Each is generated with the ffmpeg CLI, small and short.
final class SourceKindTests: XCTestCase {
    var work: URL!

    override func setUp() { work = Support.tempDir("sourcekind") }
    override func tearDown() { try? FileManager.default.removeItem(at: work) }

    func ffmpeg(_ args: [String], _ name: String) throws -> String {
        let out = work.appendingPathComponent(name).path
        let r = try Support.run("ffmpeg", ["-v", "error", "-nostdin", "-y"] + args + [out])
        XCTAssertEqual(r.status, 0, r.stderr)
        return out
    }

    /// ffprobe's `stream=` entries of the first video stream of `path`.
    func probe(_ path: String, _ entries: String) throws -> [String: String] {
        let o = try Support.run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=\(entries)",
                                            "-of", "default=nw=1", path])
        XCTAssertEqual(o.status, 0, o.stderr)
        var d: [String: String] = [:]
        for line in o.stdout.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { d[String(kv[0])] = String(kv[1]) }
        }
        return d
    }

    // MARK: Portrait

    /// Apple's rungs for a 720×1280 phone video: chosen by the short side,
    /// portrait, never above the source, no two alike.
    func testPortraitLadderByShortSide() throws {
        let r = try Ladder.pick(sourceWidth: 720, sourceHeight: 1280)
        XCTAssertEqual(r.map(\.name), ["720p-4500k", "720p-3000k", "540p-2000k", "432p-1100k", "432p-730k", "360p-365k", "234p-145k"])
        XCTAssertEqual(r.map { [$0.width, $0.height] },
                       [[720, 1280], [720, 1280], [540, 960], [432, 768], [432, 768], [360, 640], [234, 416]])
        XCTAssertEqual(Set(r.map(\.name)).count, r.count, "no duplicate rungs")
        for rung in r { XCTAssertLessThanOrEqual(rung.width, 720); XCTAssertLessThanOrEqual(rung.height, 1280) }
        // Landscape is unchanged, and WxH rungs take the source's orientation.
        XCTAssertEqual(try Ladder.pick(sourceWidth: 1280, sourceHeight: 720).first.map { [$0.width, $0.height] }, [1280, 720])
        XCTAssertEqual(try Ladder.pick(sourceWidth: 720, sourceHeight: 1280, spec: "1280x720:3000k").map { [$0.width, $0.height] },
                       [[720, 1280]])
        // A portrait source smaller than every rung: one rung at its own size.
        XCTAssertEqual(try Ladder.pick(sourceWidth: 151, sourceHeight: 201).map { [$0.width, $0.height] }, [[150, 200]])
    }

    /// A real 720×1280 file: the renditions and master.m3u8 stay portrait.
    func testPortraitSourceStaysPortrait() throws {
        let src = try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=720x1280:rate=30", "-t", "2",
                              "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], "portrait.mp4")
        let out = work.appendingPathComponent("out")
        var o = TranscodeOptions(input: src, output: out.path)
        o.ladder = "720p:3000k,360p:365k"
        o.preset = "ultrafast"
        o.thumbnails = false
        let r = try Transcoder(options: o).run()
        XCTAssertEqual(r.video.map { [$0.width, $0.height] }, [[720, 1280], [360, 640]])
        let master = Support.read(out.appendingPathComponent("master.m3u8"))
        let resolutions = master.split(separator: "\n").filter { $0.hasPrefix("#EXT-X-STREAM-INF:") }
            .map { Support.attributes(String($0))["RESOLUTION"] ?? "" }
        XCTAssertEqual(resolutions, ["720x1280", "360x640"])
        XCTAssertFalse(master.contains("608x1080"))
        let p = try probe(out.appendingPathComponent("360p-365k/index.m3u8").path, "width,height")
        XCTAssertEqual([p["width"], p["height"]], ["360", "640"])
    }

    /// A phone video stored landscape with a display rotation: the ladder is
    /// portrait and the pictures are upright, as ffmpeg shows them.
    func testRotatedSourceIsTurnedUpright() throws {
        let plain = try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "1",
                                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], "landscape.mp4")
        let src = try ffmpeg(["-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90"], "rotated.mp4")
        let out = work.appendingPathComponent("out")
        var o = TranscodeOptions(input: src, output: out.path)
        o.ladder = "360p:3000k"
        o.preset = "ultrafast"
        o.thumbnails = false
        let r = try Transcoder(options: o).run()
        XCTAssertEqual(r.video.map { [$0.width, $0.height] }, [[360, 640]])
        let rung = out.appendingPathComponent("360p-3000k/index.m3u8").path
        let upright = try ffmpeg(["-i", src, "-c:v", "rawvideo", "-f", "nut"], "upright.nut")  // ffmpeg autorotates
        let sideways = try ffmpeg(["-noautorotate", "-i", src, "-vf", "scale=360:640", "-c:v", "rawvideo", "-f", "nut"], "sideways.nut")
        XCTAssertGreaterThan(try psnr(rung, upright), 30, "turned like ffmpeg turns it")
        XCTAssertLessThan(try psnr(rung, sideways), 20)
    }

    // MARK: HDR

    /// A 2 s 640×360 10-bit HEVC source tagged BT.2020 with `transfer`.
    func hdrSource(_ transfer: String) throws -> String {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "2", "-pix_fmt", "yuv420p10le",
                    "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                    "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc"], "hdr-\(transfer).mp4")
    }

    /// PSNR (average, dB) of two videos of one size, from their first frames on.
    func psnr(_ a: String, _ b: String) throws -> Double {
        let o = try Support.run("ffmpeg", ["-nostdin", "-i", a, "-i", b, "-lavfi",
                                           "[0:v]setpts=PTS-STARTPTS[a];[1:v]setpts=PTS-STARTPTS[b];[a][b]psnr", "-f", "null", "-"])
        XCTAssertEqual(o.status, 0, o.stderr)
        guard let r = o.stderr.range(of: "average:") else { XCTFail("no PSNR in \(o.stderr)"); return 0 }
        let v = o.stderr[r.upperBound...].prefix { $0.isNumber || $0 == "." }
        return Double(v) ?? (o.stderr[r.upperBound...].hasPrefix("inf") ? 100 : 0)
    }

    /// PQ and HLG sources are tone-mapped to SDR, tagged BT.709, and say so
    /// (result, manifest.json, VIDEO-RANGE=SDR): never flattened silently.
    func testHDRSourceIsToneMappedAndTagged() throws {
        for (transfer, range) in [("smpte2084", "PQ"), ("arib-std-b67", "HLG")] {
            let src = try hdrSource(transfer)
            let out = work.appendingPathComponent("out-\(range)")
            var o = TranscodeOptions(input: src, output: out.path)
            o.ladder = "360p:3000k"
            o.preset = "ultrafast"
            o.thumbnails = false
            let r = try Transcoder(options: o).run()
            XCTAssertEqual(r.sourceVideoRange.rawValue, range)
            XCTAssertTrue(r.toneMapped, range)

            let rung = out.appendingPathComponent("360p-3000k/index.m3u8").path
            let p = try probe(rung, "pix_fmt,color_primaries,color_transfer,color_space,color_range")
            XCTAssertEqual(p["pix_fmt"], "yuv420p", range)
            XCTAssertEqual(p["color_primaries"], "bt709", range)
            XCTAssertEqual(p["color_transfer"], "bt709", range)
            XCTAssertEqual(p["color_space"], "bt709", range)
            XCTAssertEqual(p["color_range"], "tv", range)

            let master = Support.read(out.appendingPathComponent("master.m3u8"))
            let inf = try XCTUnwrap(master.split(separator: "\n").first { $0.hasPrefix("#EXT-X-STREAM-INF:") })
            XCTAssertEqual(Support.attributes(String(inf))["VIDEO-RANGE"], "SDR", range)
            let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("manifest.json"))) as? [String: Any])
            XCTAssertEqual(manifest["source_video_range"] as? String, range)
            XCTAssertEqual(manifest["video_range"] as? String, "SDR")
            XCTAssertEqual(manifest["tone_mapped"] as? Bool, true)

            // The pictures really are tone-mapped: close to ffmpeg's own
            // zscale+tonemap of the source, far from a plain 10→8 bit cut.
            let ref = try ffmpeg(["-i", src, "-vf", "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p",
                                  "-c:v", "rawvideo", "-f", "nut"], "ref-\(range).nut")
            let naive = try ffmpeg(["-i", src, "-vf", "format=yuv420p", "-c:v", "rawvideo", "-f", "nut"], "naive-\(range).nut")
            let toRef = try psnr(rung, ref), toNaive = try psnr(rung, naive)
            XCTAssertGreaterThan(toRef, 30, "\(range): tone-mapped like ffmpeg")
            XCTAssertLessThan(toNaive, 25, "\(range): not the untouched HDR code values")
        }
    }

    /// An SDR source is not tone-mapped and says it is SDR.
    func testSDRSourceIsNotToneMapped() throws {
        let src = try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
                              "-pix_fmt", "yuv420p", "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"], "sdr.mp4")
        let out = work.appendingPathComponent("out")
        var o = TranscodeOptions(input: src, output: out.path)
        o.preset = "ultrafast"
        o.thumbnails = false
        let r = try Transcoder(options: o).run()
        XCTAssertEqual(r.sourceVideoRange, .sdr)
        XCTAssertFalse(r.toneMapped)
        let p = try probe(out.appendingPathComponent("\(r.video[0].name)/index.m3u8").path, "color_transfer,color_primaries")
        XCTAssertEqual(p["color_transfer"], "bt709", "source tags kept")
        XCTAssertEqual(p["color_primaries"], "bt709")
    }
}
