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
        let name = String(format: "seg_%05d.jpg", index)
        try data.write(to: dir.appendingPathComponent(name))
        return "thumbs/" + name
    }
}
