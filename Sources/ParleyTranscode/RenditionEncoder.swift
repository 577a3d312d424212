import Foundation
import CFFmpeg
import ParleyMedia

/// A bounded blocking queue between the decode thread and one encoder thread.
final class FrameQueue: @unchecked Sendable {
    struct Item { let frame: Frame; let boundary: Bool }
    private let cond = NSCondition()
    private var items: [Item] = []
    private var head = 0
    private var closed = false
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Blocks while full. Returns false if the queue was closed (abort).
    func put(_ item: Item) -> Bool {
        cond.lock(); defer { cond.unlock() }
        while items.count - head >= capacity && !closed { cond.wait() }
        if closed { return false }
        items.append(item)
        cond.broadcast()
        return true
    }

    /// Blocks while empty; nil once closed and drained.
    func take() -> Item? {
        cond.lock(); defer { cond.unlock() }
        while head == items.count && !closed { cond.wait() }
        if head == items.count { return nil }
        let it = items[head]
        head += 1
        if head > 64 { items.removeFirst(head); head = 0 }
        cond.broadcast()
        return it
    }

    func close() {
        cond.lock(); closed = true; cond.broadcast(); cond.unlock()
    }

    /// Drops whatever is queued and closes (abort path).
    func cancel() {
        cond.lock(); closed = true; items.removeAll(); head = 0; cond.broadcast(); cond.unlock()
    }
}

/// Encoder settings shared by every video rung.
struct VideoSettings: Sendable {
    var preset: String
    var segmentFrames: Int
    var frameRate: Rational
    var timeBase: Rational
    var frameDuration: Int64
    var threads: Int
    /// Colour tags of every rung (BT.709 for a tone-mapped HDR source).
    var color: ColorDescription
}

/// One video rung on its own thread: scale, encode (libx264, High, capped
/// VBR, IDR forced at each segment boundary), package.
final class VideoRenditionEncoder: @unchecked Sendable {
    let rung: Rung
    let queue = FrameQueue(capacity: 16)
    let dir: URL
    private let encoder: Encoder
    private let packager: Packager
    private var scaler: Scaler?
    private let srcWidth: Int, srcHeight: Int, srcFormat: AVPixelFormat
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private(set) var error: Error?
    /// pts (encoder time base) of boundary frames whose IDR has not come out yet.
    private var pendingBoundaries: [Int64] = []
    private var endPTS: Int64 = 0
    /// SPS bytes profile/constraints/level for the CODECS attribute.
    private(set) var codecs = "avc1.640028"
    private var sawFirstPacket = false

    init(rung: Rung, settings: VideoSettings, format: SegmentFormat, dir: URL,
         source: (width: Int, height: Int, format: AVPixelFormat), originPTS: Int64) throws {
        self.rung = rung
        self.dir = dir
        srcWidth = source.width; srcHeight = source.height; srcFormat = source.format
        var v = Encoder.Video(width: rung.width, height: rung.height, timeBase: settings.timeBase, frameRate: settings.frameRate)
        v.bitRate = rung.bitRate
        v.maxRate = rung.maxRate
        v.bufferSize = rung.bufferSize
        v.gopSize = settings.segmentFrames
        v.threads = settings.threads
        v.globalHeader = format == .fmp4
        v.color = settings.color
        // Closed GOPs, no scene-cut keyframes: IDRs only where we force them
        // (every segment boundary), identical in every rung.
        v.options = ["preset": settings.preset, "profile": "high",
                     "x264-params": "scenecut=0:open-gop=0", "forced-idr": "1"]
        encoder = try Encoder(video: v)
        packager = try Packager(format: format, dir: dir, encoder: encoder, isVideo: true,
                                frameDuration: settings.frameDuration, originPTS: originPTS)
        if source.width != rung.width || source.height != rung.height || source.format != AV_PIX_FMT_YUV420P {
            scaler = try Scaler(inWidth: source.width, inHeight: source.height, inFormat: source.format,
                                outWidth: rung.width, outHeight: rung.height, outFormat: AV_PIX_FMT_YUV420P)
        }
        let ex = encoder.extradata
        if let c = H264.codecsString(fromAnnexBOrAVCC: ex) { codecs = c }
    }

    var segments: [Segment] { packager.segments }
    var initBytes: Int { packager.initBytes }

    func start() {
        let t = Thread { [self] in
            do { try self.run() } catch {
                self.error = error
                self.queue.cancel()
            }
            self.done.signal()
        }
        t.name = "rung-\(rung.name)"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Called by the decode thread after the last frame.
    func finish(endPTS: Int64) {
        self.endPTS = endPTS
        queue.close()
    }

    func wait() { done.wait() }

    private func run() throws {
        let pkt = Packet()
        while let item = queue.take() {
            let frame = try scaler?.scaleReusingOutput(item.frame) ?? item.frame
            if item.boundary {
                frame.forceKeyframe = true
                pendingBoundaries.append(frame.pts)
            } else {
                frame.forceKeyframe = false
            }
            _ = try encoder.send(frame)
            try drain(pkt)
        }
        _ = try encoder.send(nil)
        try drain(pkt)
        try packager.finish(endPTS: endPTS)
    }

    private func drain(_ pkt: Packet) throws {
        while try encoder.receive(into: pkt) {
            if !sawFirstPacket {
                sawFirstPacket = true
                if let c = H264.codecsString(fromAnnexBOrAVCC: Array(pkt.data)), encoder.extradata.isEmpty { codecs = c }
            }
            var starts = false
            if pkt.isKeyframe, let b = pendingBoundaries.first, pkt.pts == b {
                pendingBoundaries.removeFirst()
                starts = true
            }
            try packager.write(pkt, startsSegment: starts)
            pkt.unref()
        }
    }
}

/// AAC-LC stereo audio: resample, encode, package (on the decode thread;
/// it costs little next to video).
final class AudioRenditionEncoder {
    let dir: URL
    let bitRate: Int
    private let encoder: Encoder
    private let resampler: Resampler
    private let packager: Packager
    private let segmentSamples: Int64
    private var nextBoundary: Int64
    private let pkt = Packet()
    private var lastEnd: Int64 = 0
    var segments: [Segment] { packager.segments }
    var initBytes: Int { packager.initBytes }

    init(decoder: Decoder, bitRate: Int, format: SegmentFormat, dir: URL, segmentSeconds: Double) throws {
        self.dir = dir
        self.bitRate = bitRate
        var a = Encoder.Audio()
        a.bitRate = bitRate
        encoder = try Encoder(audio: a)
        resampler = try Resampler(inLayout: decoder.channelLayout, inFormat: decoder.sampleFormat, inRate: decoder.sampleRate,
                                  outLayout: encoder.channelLayout, outFormat: encoder.sampleFormat, outRate: encoder.sampleRate)
        packager = try Packager(format: format, dir: dir, encoder: encoder, isVideo: false, frameDuration: 1024, originPTS: 0)
        segmentSamples = Int64((segmentSeconds * Double(encoder.sampleRate)).rounded())
        nextBoundary = segmentSamples
    }

    func push(_ frame: Frame?) throws {
        try resampler.push(frame)
        let n = encoder.frameSize > 0 ? encoder.frameSize : 1024
        while let f = try resampler.pop(count: n, final: frame == nil) {
            _ = try encoder.send(f)
            try drain()
        }
        if frame == nil {
            _ = try encoder.send(nil)
            try drain()
            try packager.finish(endPTS: max(lastEnd, resampler.nextPTS))
        }
    }

    private func drain() throws {
        while try encoder.receive(into: pkt) {
            var starts = false
            if pkt.pts >= nextBoundary {
                starts = true
                while nextBoundary <= pkt.pts { nextBoundary += segmentSamples }
            }
            lastEnd = pkt.pts + max(pkt.duration, 0)
            try packager.write(pkt, startsSegment: starts)
            pkt.unref()
        }
    }
}

enum H264 {
    /// `avc1.PPCCLL` from the first SPS in Annex B bytes or an AVCC record.
    static func codecsString(fromAnnexBOrAVCC b: [UInt8]) -> String? {
        if b.count >= 4, b[0] == 1 {
            return String(format: "avc1.%02X%02X%02X", b[1], b[2], b[3])
        }
        var i = 0
        while i + 4 < b.count {
            if b[i] == 0, b[i + 1] == 0, b[i + 2] == 1 {
                let nal = i + 3
                if b[nal] & 0x1F == 7, nal + 3 < b.count {
                    return String(format: "avc1.%02X%02X%02X", b[nal + 1], b[nal + 2], b[nal + 3])
                }
                i = nal
            } else { i += 1 }
        }
        return nil
    }
}
