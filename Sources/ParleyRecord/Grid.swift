import CFFmpeg
import Glibc
import ParleyCore
import ParleyMedia

/// The composite export's settings (config keys `record-grid-*`): a grid of
/// the room's video tracks on one canvas, with the room's mix as its audio.
public struct GridOptions: Sendable, Equatable {
    /// Canvas size in pixels (even; at most `maxWidth` × `maxHeight`).
    public var width = 1280
    public var height = 720
    /// Canvas frames a second.
    public var frameRate = 15
    /// Video tracks shown at most; later ones are left out of the grid (counted in the result).
    public var maxTiles = 9
    /// VP8 target bit rate, bit/s.
    public var bitRate = 1_500_000

    public static let maxWidth = 1920
    public static let maxHeight = 1080
    public static let tileLimit = 16

    public init() {}

    /// Throws unless every field is within its bound.
    public func validate() throws {
        guard (160...Self.maxWidth).contains(width), (120...Self.maxHeight).contains(height), width % 2 == 0, height % 2 == 0 else {
            throw RecordError.export("grid size \(width)x\(height): even, from 160x120 to \(Self.maxWidth)x\(Self.maxHeight)")
        }
        guard (1...30).contains(frameRate) else { throw RecordError.export("grid frame rate \(frameRate): 1 to 30") }
        guard (1...Self.tileLimit).contains(maxTiles) else { throw RecordError.export("grid tiles \(maxTiles): 1 to \(Self.tileLimit)") }
    }

    /// Parses `WIDTHxHEIGHT`.
    public static func size(_ s: String) -> (width: Int, height: Int)? {
        let parts = s.lowercased().split(separator: "x")
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]) else { return nil }
        return (w, h)
    }
}

/// What an export writes besides the per-participant files and the mix.
public struct ExportOptions: Sendable, Equatable {
    /// Write `grid.webm` (nil: no composite).
    public var grid: GridOptions?
    public init(grid: GridOptions? = nil) { self.grid = grid }
}

extension Exporter {
    /// One tile of the grid: a video track, decoded as the canvas clock
    /// passes its frames, showing its latest picture.
    final class Tile {
        let source: TimedSource
        let decoder: Decoder
        /// Where the tile sits on the canvas (even coordinates and size).
        let x: Int, y: Int, width: Int, height: Int
        /// Times (ns since the start) the track's participant left or the track was removed, ascending.
        private var ends: [Int64]
        private var nextEnd = 0
        /// The latest decoded picture, nil before the first and after a leave.
        private(set) var picture: Frame?
        private var spare = Frame()
        private var lastFed = Int64.min
        private var scaler: Scaler?
        private var scalerKey = (0, 0, -1)

        init(source: TimedSource, ends: [Int64], x: Int, y: Int, width: Int, height: Int) throws {
            self.source = source
            self.ends = ends
            self.x = x; self.y = y; self.width = width; self.height = height
            let s = source.summary
            decoder = try Decoder(codec: s.info.spec.codec.lowercased(), extradata: s.parameterSets, threads: 1)
        }

        /// Decodes every frame due by `time` (decode order) and applies the leaves passed by then.
        func advance(to time: Int64) throws {
            while let (frame, _) = source.current, source.decodeTime <= time {
                lastFed = source.decodeTime
                decode(frame.data)
                try source.advance()
            }
            while nextEnd < ends.count, ends[nextEnd] <= time {
                if lastFed < ends[nextEnd] { picture = nil }
                nextEnd += 1
            }
        }

        /// A damaged or undecodable frame (loss before a keyframe) is skipped: the tile keeps its last picture.
        private func decode(_ data: [UInt8]) {
            guard let packet = try? Packet(copying: data) else { return }
            var sent = false
            while !sent {
                guard let s = try? decoder.send(packet) else { return }
                sent = s
                while (try? decoder.receive(into: spare)) == true {
                    let latest = spare
                    spare = picture ?? Frame()
                    spare.unref()
                    picture = latest
                }
            }
        }

        /// Draws the picture, fitted inside the tile with its aspect kept, on a black canvas.
        func draw(on canvas: Frame) throws {
            guard let p = picture, p.width > 0, p.height > 0 else { return }
            var w = width, h = p.height * width / p.width
            if h > height { h = height; w = p.width * height / p.height }
            w = max(2, w & ~1); h = max(2, h & ~1)
            let key = (p.width << 16 | p.height, w << 16 | h, Int(p.pointer.pointee.format))
            if scaler == nil || key != scalerKey {
                scaler = try Scaler(inWidth: p.width, inHeight: p.height, inFormat: p.pixelFormat,
                                    outWidth: w, outHeight: h, outFormat: AV_PIX_FMT_YUV420P, flags: SWS_BILINEAR)
                scalerKey = key
            }
            try scaler!.scale(p, into: canvas, x: x + (width - w) / 2 & ~1, y: y + (height - h) / 2 & ~1)
        }
    }

    /// Columns and rows for `n` tiles: the smallest square grid that holds
    /// them, one row fewer when the last would be empty (2 side by side, 3
    /// and 4 in 2×2, 5 and 6 in 3×2, up to 9 in 3×3).
    static func gridShape(_ n: Int) -> (columns: Int, rows: Int) {
        let columns = max(1, Int(Double(n).squareRoot().rounded(.up)))
        return (columns, max(1, (n + columns - 1) / columns))
    }

    /// Writes `grid.webm`: the video tracks (in the order they started, at
    /// most `maxTiles`) in a grid on one canvas at a fixed frame rate,
    /// each tile showing its track's latest picture on the recording's
    /// clock (black before its first frame and after its participant left
    /// or the track was removed), encoded with libvpx (VP8); and the Opus
    /// track of `mix` (the room mix) copied in unchanged. The grid lasts
    /// until the last frame of any track. Returns how many video tracks were
    /// left out.
    static func writeGrid(_ summaries: [TrackSummary], directory: String, events: [RecordingEvent], startMillis: Int64,
                          mix: String?, options o: GridOptions, to path: String) throws -> Int {
        try o.validate()
        func startTime(_ s: TrackSummary) -> Int64 { Int64(((s.senderSeconds(s.firstTimestamp) + s.offset) * 1e9).rounded()) }
        let video = summaries.filter { $0.info.spec.kind == .video && $0.frames > 0 }
            .sorted { startTime($0) < startTime($1) }
        let shown = Array(video.prefix(o.maxTiles))
        let end = summaries.filter { $0.frames > 0 }.map { s -> Int64 in
            Int64(((s.senderSeconds(s.lastTimestamp) + s.offset) * 1e9).rounded()) + 20_000_000
        }.max() ?? 0
        do {
            let (columns, rows) = gridShape(shown.count)
            let tileW = o.width / columns & ~1, tileH = o.height / rows & ~1
            var tiles: [Tile] = []
            for (i, s) in shown.enumerated() {
                let ends = events.filter { e in
                    (e.kind == .leave && e.participant == s.info.participant) || (e.kind == .trackRemoved && e.track == s.info.id)
                }.map { ($0.atMillis - startMillis) * 1_000_000 }.sorted()
                tiles.append(try Tile(source: try TimedSource(s, directory: directory), ends: ends,
                                      x: i % columns * tileW, y: i / columns * tileH, width: tileW, height: tileH))
            }
            var v = Encoder.Video(width: o.width, height: o.height, timeBase: Rational(1, Int32(o.frameRate)),
                                  frameRate: Rational(Int32(o.frameRate), 1))
            v.codec = "libvpx"
            v.bitRate = o.bitRate
            v.gopSize = o.frameRate * 5
            v.threads = 1
            v.globalHeader = false
            v.options = ["deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"]
            let encoder = try Encoder(video: v)
            let muxer = try Muxer(format: "webm", path: path)
            let videoStream = try muxer.addStream(from: encoder)
            // The mix's packets, copied; one read ahead so they interleave with the video by time.
            let audio = try mix.map { try Demuxer(url: $0) }
            let audioIn = audio?.streams.first { $0.kind == .audio }
            let audioStream = try audioIn.map { try muxer.addStream(copying: audio!, stream: $0.index) }
            try muxer.writeHeader()
            var pending: Packet?
            func writeAudio(upTo ns: Int64) throws {
                guard let demuxer = audio, let a = audioIn, let out = audioStream else { return }
                while true {
                    if pending == nil {
                        let p = Packet()
                        while true {
                            guard try demuxer.read(into: p) else { return }
                            if p.streamIndex == a.index { break }
                            p.unref()
                        }
                        pending = p
                    }
                    let p = pending!
                    let at = p.pts == Packet.noPTS ? Int64.min : p.pts * Int64(a.timeBase.num) * 1_000_000_000 / Int64(a.timeBase.den)
                    guard at <= ns else { return }
                    try muxer.writeInterleaved(p, stream: out, timeBase: a.timeBase)
                    pending = nil
                }
            }
            let packet = Packet()
            func drain() throws {
                while try encoder.receive(into: packet) {
                    try writeAudio(upTo: packet.pts * 1_000_000_000 / Int64(o.frameRate))
                    try muxer.writeInterleaved(packet, stream: videoStream, timeBase: encoder.timeBase)
                }
            }
            let canvas = try Frame(width: o.width, height: o.height, pixelFormat: AV_PIX_FMT_YUV420P)
            let ticks = max(1, Int((Double(end) * Double(o.frameRate) / 1e9).rounded()))
            for k in 0..<ticks {
                let time = Int64(k) * 1_000_000_000 / Int64(o.frameRate)
                try check(av_frame_make_writable(canvas.pointer), "av_frame_make_writable")
                blacken(canvas)
                for t in tiles {
                    try t.advance(to: time)
                    try t.draw(on: canvas)
                }
                canvas.pts = Int64(k)
                while try !encoder.send(canvas) { try drain() }
                try drain()
            }
            while try !encoder.send(nil) { try drain() }
            try drain()
            try writeAudio(upTo: .max)
            try muxer.writeTrailer()
            return video.count - shown.count
        } catch let e as MediaError { throw RecordError.export("\(path): \(e)") }
    }

    /// Paints a planar 4:2:0 frame black (limited range: Y 16, U and V 128).
    static func blacken(_ f: Frame) {
        let p = f.pointer.pointee
        memset(p.data.0!, 16, Int(p.linesize.0) * f.height)
        memset(p.data.1!, 128, Int(p.linesize.1) * (f.height / 2))
        memset(p.data.2!, 128, Int(p.linesize.2) * (f.height / 2))
    }
}

private func check(_ ret: Int32, _ function: String) throws {
    if ret < 0 { throw MediaError(code: ret, function: function) }
}
