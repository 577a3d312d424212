import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyTranscode

/// Bad input fails with one clear line and exit code 1, and leaves nothing
/// in (or next to) the output directory.
final class BadInputTests: XCTestCase {
    var work: URL!

    override func setUp() { work = Support.tempDir("badinput") }
    override func tearDown() { try? FileManager.default.removeItem(at: work) }

    func make(_ name: String, _ bytes: Data) throws -> String {
        let p = work.appendingPathComponent(name)
        try bytes.write(to: p)
        return p.path
    }

    func ffmpeg(_ args: [String], _ name: String) throws -> String {
        let out = work.appendingPathComponent(name).path
        let r = try Support.run("ffmpeg", ["-v", "error", "-nostdin", "-y"] + args + [out])
        XCTAssertEqual(r.status, 0, r.stderr)
        return out
    }

    /// Runs the transcode both ways: the library (for the message) and the
    /// command (for the exit code); checks nothing is left behind.
    func assertFailsCleanly(_ input: String, mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let outParent = work.appendingPathComponent("outputs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outParent, withIntermediateDirectories: true)
        let out = outParent.appendingPathComponent("ladder").path
        var o = TranscodeOptions(input: input, output: out)
        o.preset = "ultrafast"
        o.ladder = "234p:145k"
        do {
            _ = try Transcoder(options: o).run()
            XCTFail("transcode of \(input) succeeded", file: file, line: line)
        } catch let e as TranscodeError {
            guard case .badInput(let msg) = e else { return XCTFail("not a bad-input error: \(e)", file: file, line: line) }
            XCTAssertFalse(msg.contains("\n"), "one line: \(msg)", file: file, line: line)
            XCTAssertTrue(msg.lowercased().contains(mentions), "'\(msg)' should mention '\(mentions)'", file: file, line: line)
        }
        let r = try runTool(parleyBinary, ["transcode", input, "--out", out, "--quiet", "--ladder", "234p:145k", "--preset", "ultrafast"])
        XCTAssertEqual(r.status, 1, r.err, file: file, line: line)
        let left = try FileManager.default.contentsOfDirectory(atPath: outParent.path)
        XCTAssertEqual(left, [], "left behind: \(left)", file: file, line: line)
    }

    func testNotAVideo() throws {
        try assertFailsCleanly(try make("notes.mp4", Data("this is not a video\n".utf8)), mentions: "not a media file")
    }

    func testZeroLength() throws {
        try assertFailsCleanly(try make("empty.mp4", Data()), mentions: "empty")
    }

    func testMissingFile() throws {
        try assertFailsCleanly(work.appendingPathComponent("nope.mp4").path, mentions: "no such file")
    }

    /// The sample cut at half: the moov is at the front (faststart), so it
    /// opens, and the transcode must notice the missing half.
    func testTruncatedFile() throws {
        let whole = try Data(contentsOf: URL(fileURLWithPath: Support.sample))
        try assertFailsCleanly(try make("cut.mp4", whole.prefix(whole.count / 2)), mentions: "truncated")
    }

    /// A truncated file whose index (moov) is at the end never opens.
    func testTruncatedFileWithoutIndex() throws {
        let full = try ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=160x120:d=2", "-c:v", "libx264", "-preset", "ultrafast"], "tail-moov.mp4")
        let whole = try Data(contentsOf: URL(fileURLWithPath: full))
        try assertFailsCleanly(try make("cut-tail.mp4", whole.prefix(whole.count / 2)), mentions: "not a media file")
    }

    func testNoVideoStream() throws {
        let audio = try ffmpeg(["-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac"], "tone.m4a")
        try assertFailsCleanly(audio, mentions: "no video stream")
    }

    /// A Matroska video track with a codec id libavcodec does not know.
    func testUnsupportedCodec() throws {
        let raw = try ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=64x64:d=0.2", "-c:v", "rawvideo", "-pix_fmt", "yuv420p"], "raw.mkv")
        var d = try Data(contentsOf: URL(fileURLWithPath: raw))
        let from = Data("V_UNCOMPRESSED".utf8), to = Data("V_PARLEYNOPEXX".utf8)
        let r = try XCTUnwrap(d.range(of: from))
        d.replaceSubrange(r, with: to)
        try assertFailsCleanly(try make("unknown.mkv", d), mentions: "unsupported")
    }

    /// `parley transcode` (in the `parley` executable, run as a process).
    func testUsageErrorsExitTwo() throws {
        func status(_ args: [String]) throws -> Int32 { try runTool(parleyBinary, ["transcode"] + args).status }
        XCTAssertEqual(try status([]), 2)
        XCTAssertEqual(try status([Support.sample]), 2, "--out missing")
        XCTAssertEqual(try status([Support.sample, "--out", "/tmp/x", "--format", "webm"]), 2)
        XCTAssertEqual(try status([Support.sample, "--out", "/tmp/x", "--ladder", "720:3000"]), 2)
        XCTAssertEqual(try status([Support.sample, "--out", "/tmp/x", "--segment-seconds", "0"]), 2)
        XCTAssertEqual(try status([Support.sample, "--bogus"]), 2)
        XCTAssertEqual(try status(["--help"]), 0)
    }
}

final class LadderTests: XCTestCase {
    func testAppleLadderNeverAboveSource() throws {
        let r = try Ladder.pick(sourceWidth: 1280, sourceHeight: 720)
        XCTAssertEqual(r.map(\.name), ["720p-4500k", "720p-3000k", "540p-2000k", "432p-1100k", "432p-730k", "360p-365k", "234p-145k"])
        XCTAssertEqual(r.first.map { [$0.width, $0.height] }, [1280, 720])
        XCTAssertEqual(r.last.map { [$0.width, $0.height] }, [416, 234])
        let full = try Ladder.pick(sourceWidth: 1920, sourceHeight: 1080)
        XCTAssertEqual(full.count, 9)
        XCTAssertEqual(full[0].maxRate, 8_580_000)
        XCTAssertEqual(full[0].bufferSize, 15_600_000)
    }

    func testAspectRatioKeptAndEven() throws {
        for r in try Ladder.pick(sourceWidth: 640, sourceHeight: 480) {
            XCTAssertEqual(r.width % 2, 0); XCTAssertEqual(r.height % 2, 0)
            XCTAssertEqual(Double(r.width) / Double(r.height), 4.0 / 3.0, accuracy: 0.02)
        }
        let tiny = try Ladder.pick(sourceWidth: 321, sourceHeight: 181)
        XCTAssertEqual(tiny.map { [$0.width, $0.height] }, [[320, 180]], "smaller than every rung: its own size")
    }

    func testLadderFlag() throws {
        let r = try Ladder.pick(sourceWidth: 1280, sourceHeight: 720, spec: "1080p:6000k,720p:3000k,360p:365k")
        XCTAssertEqual(r.map(\.name), ["720p-3000k", "360p-365k"], "1080p is above the source")
        XCTAssertEqual(try Ladder.parse("1280x720:3M")[0].bitRate, 3_000_000)
        for bad in ["", "720p", "720p:", "abc:300k", "720p:1k", "720p:fast"] {
            XCTAssertThrowsError(try Ladder.parse(bad), bad)
        }
        XCTAssertThrowsError(try Ladder.pick(sourceWidth: 640, sourceHeight: 360, spec: "1080p:6000k"))
    }
}

final class HLSFilesTests: XCTestCase {
    func testContentTypes() {
        XCTAssertEqual(HLSFiles.contentType(forPath: "a/master.m3u8"), "application/vnd.apple.mpegurl")
        XCTAssertEqual(HLSFiles.contentType(forPath: "seg_00001.m4s"), "video/iso.segment")
        XCTAssertEqual(HLSFiles.contentType(forPath: "init.mp4"), "video/mp4")
        XCTAssertEqual(HLSFiles.contentType(forPath: "seg_00001.ts"), "video/mp2t")
        XCTAssertEqual(HLSFiles.contentType(forPath: "thumbs/seg_00000.jpg"), "image/jpeg")
        XCTAssertNil(HLSFiles.contentType(forPath: "parley.db"))
    }

    func testResolveStaysInsideRoot() throws {
        let root = Support.tempDir("hlsroot")
        defer { try? FileManager.default.removeItem(at: root) }
        let asset = root.appendingPathComponent("clip/720p")
        try FileManager.default.createDirectory(at: asset, withIntermediateDirectories: true)
        try Data("#EXTM3U\n".utf8).write(to: asset.appendingPathComponent("index.m3u8"))
        try Data("x".utf8).write(to: root.deletingLastPathComponent().appendingPathComponent("secret.m3u8"))
        try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("link.m3u8").path,
                                                   withDestinationPath: root.deletingLastPathComponent().appendingPathComponent("secret.m3u8").path)
        XCTAssertEqual(HLSFiles.resolve(urlPath: "/hls/clip/720p/index.m3u8", root: root.path),
                       asset.appendingPathComponent("index.m3u8").resolvingSymlinksInPath().path)
        XCTAssertNotNil(HLSFiles.resolve(urlPath: "clip/720p/index.m3u8?x=1", root: root.path))
        for bad in ["/hls/../secret.m3u8", "/hls/clip/../../secret.m3u8", "/hls/%2e%2e/secret.m3u8", "/hls/clip/720p",
                    "/hls/.hidden/x.m3u8", "/hls/link.m3u8", "/hls/clip/720p/missing.m3u8", "/hls/", "/hls/clip\\..\\x.m3u8"] {
            XCTAssertNil(HLSFiles.resolve(urlPath: bad, root: root.path), bad)
        }
    }
}

/// Inputs that are unusual but fine.
final class EdgeInputTests: XCTestCase {
    /// A video without audio: no audio group, video-only CODECS; a 4:3
    /// source below every Apple rung gets one rung at its own size.
    func testVideoWithoutAudioAndSmallSource() throws {
        let work = Support.tempDir("edge")
        defer { try? FileManager.default.removeItem(at: work) }
        let src = work.appendingPathComponent("small.mp4").path
        let gen = try Support.run("ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=200x150:r=25:d=5",
                                             "-c:v", "libx264", "-preset", "ultrafast", src])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        var o = TranscodeOptions(input: src, output: work.appendingPathComponent("out").path)
        o.preset = "superfast"
        let r = try Transcoder(options: o).run()
        XCTAssertNil(r.audio)
        XCTAssertEqual(r.video.map { [$0.width, $0.height] }, [[200, 150]])
        XCTAssertEqual(r.video[0].segments.map(\.duration), [4, 1])
        let master = Support.read(work.appendingPathComponent("out/master.m3u8"))
        XCTAssertFalse(master.contains("EXT-X-MEDIA:TYPE=AUDIO"))
        XCTAssertFalse(master.contains("mp4a"))
        XCTAssertTrue(master.contains("RESOLUTION=200x150,FRAME-RATE=25.000"))
        let decode = try Support.run("ffmpeg", ["-v", "error", "-nostdin", "-i", work.appendingPathComponent("out/master.m3u8").path, "-f", "null", "-"])
        XCTAssertEqual(decode.status, 0, decode.stderr)
    }
}
