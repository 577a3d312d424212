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
}
