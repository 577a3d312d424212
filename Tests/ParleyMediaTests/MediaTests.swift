import CFFmpeg
import Foundation
import XCTest
@testable import ParleyMedia

/// The libav wrappers against the real libraries and the committed sample.
final class MediaTests: XCTestCase {
    static let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("samples/sample-720p-12s.mp4").path

    override class func setUp() { MediaLog.quiet() }

    func testDemuxerReportsStreams() throws {
        let d = try Demuxer(url: Self.sample)
        let v = try XCTUnwrap(d.bestStream(.video))
        XCTAssertEqual(v.codecName, "h264")
        XCTAssertEqual([v.width, v.height], [1280, 720])
        XCTAssertEqual(v.frameRate.double, 30, accuracy: 0.001)
        XCTAssertEqual(v.duration, 12, accuracy: 0.05)
        let a = try XCTUnwrap(d.bestStream(.audio))
        XCTAssertEqual(a.codecName, "aac")
        XCTAssertEqual(a.sampleRate, 48000)
        XCTAssertEqual(a.channels, 2)
    }

    func testOpenErrorCarriesLibavMessage() throws {
        let p = NSTemporaryDirectory() + "/parley-notmedia-\(getpid()).mp4"
        try Data("plain text, not media".utf8).write(to: URL(fileURLWithPath: p))
        defer { unlink(p) }
        XCTAssertThrowsError(try Demuxer(url: p)) { e in
            let m = e as? MediaError
            XCTAssertLessThan(m?.code ?? 0, 0)
            XCTAssertEqual(m?.message, "Invalid data found when processing input")
            XCTAssertTrue(m?.function.hasPrefix("avformat_open_input") ?? false)
        }
        XCTAssertThrowsError(try Demuxer(url: "/nonexistent/file.mp4")) { e in
            XCTAssertEqual((e as? MediaError)?.message, "No such file or directory")
        }
    }

    /// Decode the first second, scale to 320x180, encode H.264 and AAC, mux
    /// to MP4 in memory: ffprobe reads the result.
    func testDecodeScaleEncodeMux() throws {
        let d = try Demuxer(url: Self.sample)
        let vs = try XCTUnwrap(d.bestStream(.video))
        let dec = try Decoder(demuxer: d, stream: vs)
        var settings = Encoder.Video(width: 320, height: 180, timeBase: vs.timeBase, frameRate: vs.frameRate)
        settings.bitRate = 300_000
        settings.options = ["preset": "superfast", "profile": "high"]
        let enc = try Encoder(video: settings)
        let mux = try Muxer(format: "mp4")
        try mux.addStream(from: enc)
        try mux.writeHeader(options: ["movflags": "frag_keyframe+empty_moov"])
        let scaler = try Scaler(inWidth: 1280, inHeight: 720, inFormat: AV_PIX_FMT_YUV420P,
                                outWidth: 320, outHeight: 180, outFormat: AV_PIX_FMT_YUV420P)
        let pkt = Packet(), frame = Frame(), out = Packet()
        var frames = 0, packets = 0
        func drain() throws {
            while try enc.receive(into: out) {
                out.rescaleTimestamps(from: enc.timeBase, to: mux.timeBase(ofStream: 0))
                out.streamIndex = 0
                try mux.write(out)
                packets += 1
            }
        }
        while frames < 30, try d.read(into: pkt) {
            defer { pkt.unref() }
            guard pkt.streamIndex == vs.index else { continue }
            _ = try dec.send(pkt)
            while frames < 30, try dec.receive(into: frame) {
                let small = try scaler.scale(frame)
                small.pts = frame.bestEffortTimestamp
                XCTAssertEqual([small.width, small.height], [320, 180])
                _ = try enc.send(small)
                try drain()
                frames += 1
                frame.unref()
            }
        }
        _ = try enc.send(nil)
        try drain()
        try mux.writeTrailer()
        let bytes = try mux.takeBytes()
        XCTAssertEqual(frames, 30)
        XCTAssertEqual(packets, 30)
        let path = NSTemporaryDirectory() + "/parley-mux-\(getpid()).mp4"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ffprobe")
        p.arguments = ["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,profile,width,height,nb_read_frames", "-of", "csv=p=0", path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(text.trimmingCharacters(in: .whitespacesAndNewlines), "h264,High,320,180,30")
    }

    func testResamplerHandsOutEncoderSizedFrames() throws {
        let d = try Demuxer(url: Self.sample)
        let a = try XCTUnwrap(d.bestStream(.audio))
        let dec = try Decoder(demuxer: d, stream: a)
        let enc = try Encoder(audio: Encoder.Audio())
        XCTAssertEqual(enc.frameSize, 1024)
        let r = try Resampler(inLayout: dec.channelLayout, inFormat: dec.sampleFormat, inRate: dec.sampleRate,
                              outLayout: enc.channelLayout, outFormat: enc.sampleFormat, outRate: 48000)
        let pkt = Packet(), frame = Frame()
        var got = 0
        while got < 20, try d.read(into: pkt) {
            defer { pkt.unref() }
            guard pkt.streamIndex == a.index else { continue }
            _ = try dec.send(pkt)
            while try dec.receive(into: frame) {
                try r.push(frame)
                frame.unref()
                while let f = try r.pop(count: 1024) {
                    XCTAssertEqual(f.sampleCount, 1024)
                    XCTAssertEqual(f.pts, Int64(got) * 1024)
                    _ = try enc.send(f)
                    got += 1
                }
            }
        }
        XCTAssertEqual(got, 20)
    }
}
