import Foundation
import CFFmpeg
import ParleyMedia

/// The one error type of ParleyTranscode.
public enum TranscodeError: Error, CustomStringConvertible {
    /// The input cannot be turned into a ladder (not a video, truncated, ...).
    case badInput(String)
    /// Options that make no sense.
    case usage(String)
    /// Anything else: an encoder or a file system step failed.
    case failed(String)
    /// Stopped on request (a worker shutting down).
    case cancelled

    public var description: String {
        switch self {
        case .badInput(let s), .usage(let s), .failed(let s): return s
        case .cancelled: return "cancelled"
        }
    }

    /// True when running the same job again cannot succeed: the input is
    /// not a usable video (not a media file, no video stream, unsupported
    /// codec, truncated) or the options are wrong. An I/O error, a full
    /// disk or a failed encoder may go away, so those are retried.
    public var isPermanent: Bool {
        switch self {
        case .badInput, .usage: return true
        case .failed, .cancelled: return false
        }
    }

    /// A libav error while reading `input`: transient when the system
    /// failed (I/O error, out of memory, ...), else the input is bad.
    static func reading(_ input: String, _ e: MediaError, badInput: String) -> TranscodeError {
        e.isSystemError ? .failed("\(input): read error (\(e.message))") : .badInput("\(input): \(badInput) (\(e.message))")
    }
}

/// What `parley transcode` does, as values.
public struct TranscodeOptions: Sendable, Codable {
    public var input: String
    public var output: String
    /// `--ladder` spec, nil = Apple's rungs up to the source resolution.
    public var ladder: String?
    public var segmentSeconds: Double = 4
    public var format: SegmentFormat = .fmp4
    /// x264 preset (`veryfast` by default: real time on small machines).
    public var preset: String = "veryfast"
    public var audioBitRate: Int = 128_000
    public var thumbnails = true
    /// Threads per x264 encoder (0: libx264's choice).
    public var encoderThreads: Int = 0

    public init(input: String, output: String) { self.input = input; self.output = output }

    enum CodingKeys: String, CodingKey {
        case input, output, ladder, segmentSeconds = "segment_seconds", format, preset
        case audioBitRate = "audio_bitrate", thumbnails, encoderThreads = "threads"
    }

    /// Decodes a job description where only `input` is required
    /// (`{"input": "/media/clip.mp4", "ladder": "720p:3000k", "format": "ts"}`);
    /// everything else takes the command's defaults.
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        input = try c.decode(String.self, forKey: .input)
        output = try c.decodeIfPresent(String.self, forKey: .output) ?? ""
        ladder = try c.decodeIfPresent(String.self, forKey: .ladder)
        segmentSeconds = try c.decodeIfPresent(Double.self, forKey: .segmentSeconds) ?? 4
        format = try c.decodeIfPresent(SegmentFormat.self, forKey: .format) ?? .fmp4
        preset = try c.decodeIfPresent(String.self, forKey: .preset) ?? "veryfast"
        audioBitRate = try c.decodeIfPresent(Int.self, forKey: .audioBitRate) ?? 128_000
        thumbnails = try c.decodeIfPresent(Bool.self, forKey: .thumbnails) ?? true
        encoderThreads = try c.decodeIfPresent(Int.self, forKey: .encoderThreads) ?? 0
    }

    /// The x264 presets `preset` may name.
    public static let presets = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]

    /// Checks the options the way the command line does (for `POST /jobs`):
    /// throws `TranscodeError.usage` naming the bad field.
    public func validate() throws {
        if input.isEmpty { throw TranscodeError.usage("input: required") }
        if let l = ladder {
            do { _ = try Ladder.parse(l) } catch { throw TranscodeError.usage("\(error)") }
        }
        guard segmentSeconds >= 1, segmentSeconds <= 60 else { throw TranscodeError.usage("segment_seconds must be 1-60") }
        guard TranscodeOptions.presets.contains(preset) else { throw TranscodeError.usage("preset must be one of \(TranscodeOptions.presets.joined(separator: ", "))") }
        guard audioBitRate >= 32_000, audioBitRate <= 512_000 else { throw TranscodeError.usage("audio_bitrate must be 32000-512000") }
        guard encoderThreads >= 0, encoderThreads <= 64 else { throw TranscodeError.usage("threads must be 0-64") }
    }
}

/// Progress of a running transcode.
public struct TranscodeProgress: Sendable {
    public var frames: Int
    public var mediaSeconds: Double
    public var totalSeconds: Double
    public var elapsed: Double
    public var fraction: Double { totalSeconds > 0 ? min(1, mediaSeconds / totalSeconds) : 0 }
    public var fps: Double { elapsed > 0 ? Double(frames) / elapsed : 0 }
    public var speed: Double { elapsed > 0 ? mediaSeconds / elapsed : 0 }
    public var eta: Double { speed > 0 ? max(0, (totalSeconds - mediaSeconds) / speed) : 0 }
}

/// One finished rendition.
public struct RenditionResult: Sendable, Codable {
    public var name: String
    public var kind: String  // "video" or "audio"
    public var width: Int
    public var height: Int
    public var targetBitRate: Int
    public var codecs: String
    public var initBytes: Int
    public var segments: [Segment]

    public var duration: Double { segments.reduce(0) { $0 + $1.duration } }
    public var totalBytes: Int { segments.reduce(0) { $0 + $1.bytes } }
    public var averageBitRate: Int { duration > 0 ? Int((Double(totalBytes) * 8 / duration).rounded(.up)) : 0 }
    public var peakBitRate: Int { segments.map(\.bitRate).max() ?? 0 }
}

/// The result of a transcode: what the playlists and manifest describe.
public struct TranscodeResult: Sendable {
    public var output: String
    public var duration: Double
    public var frameRate: Double
    public var format: SegmentFormat
    public var segmentSeconds: Double
    public var video: [RenditionResult]
    public var audio: RenditionResult?
    public var thumbnails: [String]
    public var elapsed: Double
    public var frames: Int
    /// The source's dynamic range (the renditions are always SDR).
    public var sourceVideoRange = VideoRange.sdr
    /// True when an HDR (PQ/HLG) source was tone-mapped to SDR BT.709.
    public var toneMapped: Bool { sourceVideoRange.isHDR }
}

/// Decode once, scale and encode every rung concurrently, package into
/// segments, then write playlists, thumbnails and the manifest. The ladder
/// is built in a temporary sibling directory and renamed into place.
public final class Transcoder {
    public let options: TranscodeOptions
    /// Called on the decode thread about twice a second.
    public var onProgress: ((TranscodeProgress) -> Void)?
    /// Set from any thread to stop early (the transcode throws `.cancelled`).
    public var shouldCancel: (() -> Bool)?

    public init(options: TranscodeOptions) { self.options = options }

    public func run() throws -> TranscodeResult {
        MediaLog.quiet()
        let input = options.input
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: input, isDirectory: &isDir), !isDir.boolValue else {
            throw TranscodeError.badInput("\(input): no such file")
        }
        if let size = (try? fm.attributesOfItem(atPath: input))?[.size] as? NSNumber, size.intValue == 0 {
            throw TranscodeError.badInput("\(input): empty file (0 bytes)")
        }
        guard options.segmentSeconds >= 1, options.segmentSeconds <= 60 else {
            throw TranscodeError.usage("--segment-seconds must be between 1 and 60")
        }
        let out = URL(fileURLWithPath: options.output).standardizedFileURL
        let parent = out.deletingLastPathComponent()
        try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        let tmp = parent.appendingPathComponent(".\(out.lastPathComponent).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        do {
            var result = try transcode(into: tmp)
            try Publish.replace(out, with: tmp)
            result.output = out.path
            return result
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
    }

    private func transcode(into dir: URL) throws -> TranscodeResult {
        let started = Date()
        let input = options.input
        let demuxer: Demuxer
        do { demuxer = try Demuxer(url: input) } catch let e as MediaError {
            throw TranscodeError.reading(input, e, badInput: "not a media file we can read")
        }
        guard let vinfo = demuxer.bestStream(.video) else {
            throw TranscodeError.badInput("\(input): no video stream")
        }
        let vdec: Decoder
        do { vdec = try Decoder(demuxer: demuxer, stream: vinfo) } catch {
            let what = vinfo.codecID == AV_CODEC_ID_NONE ? "an unknown video codec" : "video codec '\(vinfo.codecName)'"
            throw TranscodeError.badInput("\(input): unsupported: no decoder for \(what)")
        }
        guard vinfo.width > 0, vinfo.height > 0 else {
            throw TranscodeError.badInput("\(input): video stream has no picture size (codec '\(vinfo.codecName)')")
        }
        var adec: Decoder?
        if let ainfo = demuxer.bestStream(.audio) {
            adec = try? Decoder(demuxer: demuxer, stream: ainfo, threads: 1)
        }
        demuxer.discardAll(except: Set([vinfo.index] + (adec.map { [$0.stream.index] } ?? [])))

        // The ladder follows the picture as displayed: a phone's 1920x1080 turned 90° is portrait.
        let turned = vinfo.rotation % 180 == 90
        let rungs: [Rung]
        do { rungs = try Ladder.pick(sourceWidth: turned ? vinfo.height : vinfo.width, sourceHeight: turned ? vinfo.width : vinfo.height,
                                     spec: options.ladder) } catch {
            throw TranscodeError.usage("\(error)")
        }
        var fps = vinfo.frameRate
        if fps.num <= 0 || fps.den <= 0 || fps.double > 240 { fps = Rational(30, 1) }
        let tb = vinfo.timeBase
        let frameDuration = max(1, Rational(fps.den, fps.num).rescale(1, to: tb))
        let segmentTicks = Int64((options.segmentSeconds / tb.double).rounded())
        let segmentFrames = max(1, Int((options.segmentSeconds * fps.double).rounded()))
        let total = vinfo.duration > 0 ? vinfo.duration : demuxer.duration
        // Encoders count frames (time base 1/fps), as ffmpeg feeds libx264:
        // the output is constant frame rate at the source's average rate, and
        // x264's rate control sees exactly what it sees under ffmpeg.
        let encoderTB = Rational(fps.den, fps.num)
        var settings = VideoSettings(preset: options.preset, segmentFrames: segmentFrames, frameRate: fps,
                                     timeBase: encoderTB, frameDuration: 1, threads: options.encoderThreads,
                                     color: ColorDescription())

        let fm = FileManager.default
        var audio: AudioRenditionEncoder?
        if let adec {
            let adir = dir.appendingPathComponent("audio")
            try fm.createDirectory(at: adir, withIntermediateDirectories: true)
            audio = try AudioRenditionEncoder(decoder: adec, bitRate: options.audioBitRate, format: options.format,
                                              dir: adir, segmentSeconds: options.segmentSeconds)
        }
        let thumbsDir = dir.appendingPathComponent("thumbs")
        if options.thumbnails { try fm.createDirectory(at: thumbsDir, withIntermediateDirectories: true) }

        var workers: [VideoRenditionEncoder] = []
        // Decided on the first frame: a rotated or HDR source goes through
        // `sourceFilter` (turned upright, tone-mapped to SDR BT.709).
        var sourceRange: VideoRange?
        var sourceColor = ColorDescription()
        var sourceFilter: VideoFilter?
        let filtered = Frame()
        var thumbnailer: Thumbnailer?
        var thumbnails: [String] = []
        var origin: Int64?
        var lastPTS: Int64 = 0
        var lastEncoderPTS: Int64 = -1
        var nextBoundary: Int64 = 0
        var frames = 0
        var decodeErrors = 0
        var lastReport = Date()
        let pkt = Packet()
        let frame = Frame()
        let aframe = Frame()

        func abortWorkers() {
            for w in workers { w.queue.cancel() }
            for w in workers { w.wait() }
        }
        func firstWorkerError() -> Error? { workers.lazy.compactMap(\.error).first }

        /// The first frame decides the dynamic range, the output's colour tags
        /// and the filters every frame goes through.
        func setUpSource(_ first: Frame) throws {
            sourceColor = first.color.filled(from: vinfo.color)
            let range = VideoRange(transfer: sourceColor.transfer)
            sourceRange = range
            var filters: [String] = []
            if let turn = Transcoder.rotationFilters[vinfo.rotation] { filters.append(turn) }
            if range.isHDR {
                guard VideoFilter.has(["zscale", "tonemap"]) else {
                    throw TranscodeError.failed("\(input): HDR (\(range.rawValue)) source needs tone-mapping, but this libavfilter has no zscale/tonemap filter")
                }
                sourceColor = sourceColor.filled(from: VideoRange.bt2020)
                first.color = sourceColor
                let top = rungs.max { $0.width * $0.height < $1.width * $1.height }!
                filters.append(VideoRange.toneMapFilters(width: top.width, height: top.height))
                settings.color = .bt709
            } else {
                // Pixels keep the source's colours: so do the tags. swscale turns
                // yuvj (full range) formats into limited range; others keep theirs.
                var c = sourceColor
                c.range = c.range == AVCOL_RANGE_JPEG && !Transcoder.fullRangeFormats.contains(first.pixelFormat)
                    ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG
                settings.color = c
            }
            guard !filters.isEmpty else { return }
            do { sourceFilter = try VideoFilter(filters.joined(separator: ","), input: first, timeBase: tb) } catch {
                throw TranscodeError.failed("\(input): cannot set up the filters \(filters.joined(separator: ",")) (\(error))")
            }
        }

        func handleDecodedFrame(_ decoded: Frame) throws {
            decoded.pts = decoded.bestEffortTimestamp
            if sourceRange == nil { try setUpSource(decoded) }
            guard let sourceFilter else { return try handleVideoFrame(decoded) }
            decoded.color = decoded.color.filled(from: sourceColor)
            try sourceFilter.push(decoded)
            decoded.unref()
            while try sourceFilter.pull(into: filtered) { try handleVideoFrame(filtered) }
        }

        func handleVideoFrame(_ frame: Frame) throws {
            var pts = frame.pts
            if pts == Packet.noPTS { pts = (origin ?? 0) + Int64(frames) * frameDuration }
            if frames > 0, pts <= lastPTS { pts = lastPTS + frameDuration }  // keep pts increasing
            frame.pts = pts
            if origin == nil {
                origin = pts
                nextBoundary = pts
                let src = (width: frame.width, height: frame.height, format: frame.pixelFormat)
                for r in rungs {
                    let rdir = dir.appendingPathComponent(r.name)
                    try fm.createDirectory(at: rdir, withIntermediateDirectories: true)
                    workers.append(try VideoRenditionEncoder(rung: r, settings: settings, format: options.format, dir: rdir,
                                                             source: src, originPTS: 0))
                }
                for w in workers { w.start() }
                if options.thumbnails { thumbnailer = try Thumbnailer(dir: thumbsDir, source: src) }
            }
            // A segment starts at the first frame at or past each boundary
            // (half a frame of slack for rounded timestamps): the same frame in every rung.
            var boundary = false
            if pts >= nextBoundary - frameDuration / 2 {
                boundary = true
                while nextBoundary - frameDuration / 2 <= pts { nextBoundary += segmentTicks }
                if let t = thumbnailer { thumbnails.append(try t.write(frame, index: thumbnails.count)) }
            }
            lastPTS = pts
            frames += 1
            let encoderPTS = max(lastEncoderPTS + 1, tb.rescale(pts - origin!, to: encoderTB))
            lastEncoderPTS = encoderPTS
            for w in workers {
                let f = frame.clone()
                f.pts = encoderPTS
                if !w.queue.put(FrameQueue.Item(frame: f, boundary: boundary)) {
                    throw TranscodeError.failed("encoding \(w.rung.name) failed: \(w.error.map { "\($0)" } ?? "stopped")")
                }
            }
            frame.unref()
            if let cb = onProgress, Date().timeIntervalSince(lastReport) >= 0.5 {
                lastReport = Date()
                cb(TranscodeProgress(frames: frames, mediaSeconds: Double(pts - origin!) * tb.double,
                                     totalSeconds: total, elapsed: Date().timeIntervalSince(started)))
            }
        }

        func decodeVideo(_ p: Packet?) throws {
            var sent = false
            while !sent {
                // A corrupt packet is dropped and counted, not fatal.
                do { sent = try vdec.send(p) } catch { decodeErrors += 1; sent = true }
                while true {
                    let got: Bool
                    do { got = try vdec.receive(into: frame) } catch { decodeErrors += 1; break }
                    if !got { break }
                    try handleDecodedFrame(frame)
                }
            }
        }

        func decodeAudio(_ p: Packet?) throws {
            guard let adec, let audio else { return }
            do { _ = try adec.send(p) } catch { decodeErrors += 1; return }
            while true {
                do { guard try adec.receive(into: aframe) else { break } } catch { decodeErrors += 1; continue }
                try audio.push(aframe)
                aframe.unref()
            }
        }

        // A read error is the input's (or, for EIO and the like, the system's);
        // a libav error anywhere else (encoder, scaler, filter) is ours: transient.
        func read() throws -> Bool {
            do { return try demuxer.read(into: pkt) } catch let e as MediaError {
                throw TranscodeError.reading(input, e, badInput: frames == 0 ? "cannot decode video"
                                             : "read failed after \(frames) frames, truncated or corrupt")
            }
        }
        do {
            while try read() {
                if shouldCancel?() == true { throw TranscodeError.cancelled }
                if pkt.streamIndex == vinfo.index { try decodeVideo(pkt) }
                else if pkt.streamIndex == adec?.stream.index { try decodeAudio(pkt) }
                pkt.unref()
            }
            try decodeVideo(nil)
            if let sourceFilter {
                try sourceFilter.push(nil)
                while try sourceFilter.pull(into: filtered) { try handleVideoFrame(filtered) }
            }
            try decodeAudio(nil)
            if audio != nil { try audio!.push(nil) }
        } catch let e as MediaError {
            abortWorkers()
            throw TranscodeError.failed("\(input): \(e)")
        } catch {
            abortWorkers()
            throw error
        }
        guard frames > 0, let origin else {
            abortWorkers()
            throw TranscodeError.badInput("\(input): no decodable video frames (\(vinfo.codecName))")
        }
        let decoded = Double(lastEncoderPTS + 1) * encoderTB.double
        let decodedSource = Double(lastPTS - origin + frameDuration) * tb.double
        if total > 0, decodedSource < total * 0.9 - 0.5 {
            abortWorkers()
            throw TranscodeError.badInput(String(format: "%@: truncated: decoded %.2f s of %.2f s", input, decodedSource, total))
        }
        for w in workers { w.finish(endPTS: lastEncoderPTS + 1) }
        for w in workers { w.wait() }
        if let e = firstWorkerError() { throw TranscodeError.failed("encoding failed: \(e)") }

        let video = workers.map { w in
            RenditionResult(name: w.rung.name, kind: "video", width: w.rung.width, height: w.rung.height,
                            targetBitRate: w.rung.bitRate, codecs: w.codecs, initBytes: w.initBytes, segments: w.segments)
        }
        let audioResult = audio.map { a in
            RenditionResult(name: "audio", kind: "audio", width: 0, height: 0, targetBitRate: a.bitRate,
                            codecs: "mp4a.40.2", initBytes: a.initBytes, segments: a.segments)
        }
        let result = TranscodeResult(output: dir.path, duration: decoded, frameRate: fps.double, format: options.format,
                                     segmentSeconds: options.segmentSeconds, video: video, audio: audioResult,
                                     thumbnails: thumbnails, elapsed: Date().timeIntervalSince(started), frames: frames,
                                     sourceVideoRange: sourceRange ?? .sdr)
        try Playlists.write(result, to: dir)
        try Manifest.write(result, input: input, to: dir)
        onProgress?(TranscodeProgress(frames: frames, mediaSeconds: decoded, totalSeconds: decoded,
                                      elapsed: result.elapsed))
        return result
    }
}

extension Transcoder {
    /// libavfilter filters that turn a picture clockwise, as ffmpeg's autorotate does.
    static let rotationFilters = [90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"]

    /// Pixel formats libswscale reads as full range (and converts to limited).
    static let fullRangeFormats: Set<AVPixelFormat> = [AV_PIX_FMT_YUVJ420P, AV_PIX_FMT_YUVJ422P, AV_PIX_FMT_YUVJ444P,
                                                        AV_PIX_FMT_YUVJ440P, AV_PIX_FMT_YUVJ411P]
}

/// Moving a finished ladder into place.
enum Publish {
    /// Renames `tmp` to `out`; an existing `out` is moved aside first and
    /// removed after, so `out` is either the old ladder or the new one.
    static func replace(_ out: URL, with tmp: URL) throws {
        let fm = FileManager.default
        var old: URL?
        if fm.fileExists(atPath: out.path) {
            let aside = out.deletingLastPathComponent().appendingPathComponent(".\(out.lastPathComponent).old-\(getpid())")
            try? fm.removeItem(at: aside)
            if rename(out.path, aside.path) != 0 {
                throw TranscodeError.failed("cannot move old \(out.path) aside: \(String(cString: strerror(errno)))")
            }
            old = aside
        }
        if rename(tmp.path, out.path) != 0 {
            let msg = String(cString: strerror(errno))
            if let old { _ = rename(old.path, out.path) }
            throw TranscodeError.failed("cannot rename the ladder into \(out.path): \(msg)")
        }
        if let old { try? fm.removeItem(at: old) }
    }
}
