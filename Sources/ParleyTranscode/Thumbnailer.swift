import Foundation
import CFFmpeg
import ParleyMedia

/// One JPEG per segment, from the segment's first frame, scaled to a fixed width.
final class Thumbnailer {
    private let scaler: Scaler
    private let encoder: Encoder
    private let dir: URL
    private let pkt = Packet()
    let width: Int, height: Int
    private var count = 0

    init(dir: URL, source: (width: Int, height: Int, format: AVPixelFormat), width: Int = 320) throws {
        self.dir = dir
        let w = min(width, source.width - source.width % 2)
        var h = Int((Double(w) * Double(source.height) / Double(source.width)).rounded())
        h -= h % 2
        self.width = w; self.height = max(2, h)
        scaler = try Scaler(inWidth: source.width, inHeight: source.height, inFormat: source.format,
                            outWidth: w, outHeight: self.height, outFormat: AV_PIX_FMT_YUVJ420P)
        var v = Encoder.Video(width: w, height: self.height, timeBase: Rational(1, 25), frameRate: Rational(25, 1))
        v.codec = "mjpeg"
        v.pixelFormat = AV_PIX_FMT_YUVJ420P
        v.globalHeader = false
        v.qscale = 4
        v.threads = 1
        encoder = try Encoder(video: v)
    }

    /// Writes `thumbs/seg_NNNNN.jpg` for segment `index`; returns its relative path.
    func write(_ frame: Frame, index: Int) throws -> String {
        let name = String(format: "seg_%05d.jpg", index)
        try jpeg(frame).write(to: dir.appendingPathComponent(name))
        return "thumbs/" + name
    }

    /// The frame scaled down, as one JPEG.
    func jpeg(_ frame: Frame) throws -> Data {
        let small = try scaler.scale(frame)
        small.pts = Int64(count)
        small.forceKeyframe = false
        count += 1
        _ = try encoder.send(small)
        var data = Data()
        while try encoder.receive(into: pkt) {
            data.append(pkt.data)
            pkt.unref()
        }
        return data
    }
}

/// A still for a chat attachment: an image scaled down, or a video's first
/// frame (its poster frame), as a JPEG at most `width` pixels wide.
public enum PosterFrame {
    /// Writes the JPEG for the image or video at `input` to `output`; throws
    /// when `input` has no decodable picture.
    public static func write(from input: String, to output: String, width: Int = 320) throws {
        let demuxer = try Demuxer(url: input)
        guard let stream = demuxer.bestStream(.video) else { throw MediaError("poster frame", "no picture in \(input)") }
        demuxer.discardAll(except: [stream.index])
        let decoder = try Decoder(demuxer: demuxer, stream: stream, threads: 1)
        let packet = Packet(), frame = Frame()
        var more = true
        while true {
            if try decoder.receive(into: frame) {
                let t = try Thumbnailer(dir: URL(fileURLWithPath: "/"), source: (frame.width, frame.height, frame.pixelFormat), width: width)
                try t.jpeg(frame).write(to: URL(fileURLWithPath: output))
                return
            }
            guard more else { throw MediaError("poster frame", "no frame decoded from \(input)") }
            more = try demuxer.read(into: packet)
            if more {
                if packet.streamIndex == stream.index { _ = try decoder.send(packet) }
                packet.unref()
            } else {
                _ = try decoder.send(nil)
            }
        }
    }
}
