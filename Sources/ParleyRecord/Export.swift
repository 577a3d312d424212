import Glibc
import ParleyCore
import ParleyMedia
import ParleyRTP

/// One track's frames rebuilt from its capture file, one at a time: the
/// file is streamed (`CaptureStream`), put back in order by a bounded
/// `JitterBuffer` and depacketized, so memory does not grow with the
/// recording's length.
final class FrameSource {
    let info: RoomTrack
    private let stream: CaptureStream
    private var depacketizer: any Depacketizer
    private var buffer = JitterBuffer()
    private var ready: [MediaFrame] = []
    private var readyIndex = 0
    private var flushed = false
    /// The track's first sender report, once read past.
    private(set) var firstSR: RTCPSenderReport?

    /// Nil for a codec Parley cannot export.
    init?(track: RoomTrack, directory: String) throws {
        guard let d = track.spec.makeDepacketizer() else { return nil }
        info = track
        depacketizer = d
        stream = try CaptureStream(path: directory + "/" + track.captureFile)
    }

    var tornBytes: Int { stream.tornBytes }
    /// H.264: the Annex B SPS and PPS seen so far.
    var parameterSets: [UInt8] { (depacketizer as? H264Depacketizer)?.parameterSets ?? [] }

    /// The next frame in sequence order, nil at the end.
    func next() throws -> MediaFrame? {
        while true {
            if readyIndex < ready.count {
                defer { readyIndex += 1 }
                return ready[readyIndex]
            }
            ready.removeAll(keepingCapacity: true)
            readyIndex = 0
            if flushed { return nil }
            guard let p = try stream.next() else {
                take(buffer.flush())
                flushed = true
                continue
            }
            if p.isRTCP {
                if firstSR == nil { firstSR = Self.senderReport(of: info.ssrc, in: p.bytes) }
                continue
            }
            let parsed: (UInt16, UInt32, Bool, [UInt8], UInt8)? = p.bytes.withUnsafeBytes { raw in
                guard let v = try? RTPPacketView(parsing: raw) else { return nil }
                return (v.sequenceNumber, v.timestamp, v.marker, Array(v.payload), v.payloadType)
            }
            guard let (seq, ts, marker, payload, pt) = parsed, pt == info.spec.payloadType else { continue }
            take(buffer.push(sequence: seq, timestamp: ts, marker: marker, payload: payload, arrivalNanos: p.arrivalNanos))
        }
    }

    private func take(_ outputs: [JitterOutput]) {
        for o in outputs { if let f = depacketizer.push(o) { ready.append(f) } }
    }

    static func senderReport(of ssrc: UInt32, in bytes: [UInt8]) -> RTCPSenderReport? {
        bytes.withUnsafeBytes { raw in
            guard let compound = try? RTCPCompoundView(parsing: raw) else { return nil }
            for v in compound where v.packetType == RTCP.PacketType.senderReport {
                if let sr = try? RTCPSenderReport(v), sr.ssrc == ssrc { return sr }
            }
            return nil
        }
    }
}

/// What a first pass over a track learns: where its clock sits, and what
/// the file headers need.
struct TrackSummary {
    var info: RoomTrack
    var frames = 0
    var firstTimestamp: Int64 = 0
    /// The largest RTP timestamp (extended) of any frame.
    var lastTimestamp: Int64 = .min
    /// The smallest (arrival − RTP time) over the frames, seconds.
    var minDelta = Double.infinity
    /// The first SR's (NTP seconds, extended RTP timestamp).
    var mapping: (ntpSeconds: Double, rtp: Int64)?
    var firstKeyframe: [UInt8] = []
    var parameterSets: [UInt8] = []
    var tornBytes = 0
    /// Added to a frame's sender time to put it on the recording's clock (seconds).
    var offset = 0.0

    var rate: Double { Double(info.spec.clockRate) }

    /// Sender time of an RTP timestamp, in seconds on the track's clock domain.
    func senderSeconds(_ timestamp: Int64) -> Double {
        if let m = mapping { return m.ntpSeconds + Double(timestamp - m.rtp) / rate }
        return Double(timestamp - firstTimestamp) / rate
    }

    /// A clock domain: a participant's reporting tracks, or one track alone.
    var domain: String { mapping != nil ? "p:" + info.participant : "t:" + info.id }
}

/// Turns a recording directory into files players open: one per
/// participant (`NAME.webm` when every track is VP8 or Opus, `NAME.mkv`
/// otherwise) and `mix.ogg`, the room's audio mixed. Works on whatever the
/// capture files hold up to a crash: a torn last block is skipped.
///
/// Streaming: a first pass reads each capture file to place its track on
/// the shared clock; a second reads them again, merging the tracks by time
/// into the muxer and the mix. Memory holds a read buffer, a reorder window
/// and a frame or two per track, and the mix's last 20 ms, whatever the
/// recording's length.
public enum Exporter {
    /// What an export wrote.
    public struct Result: Sendable {
        /// Paths of the files written, participants first, then the mix.
        public var files: [String]
        /// Bytes skipped at the end of capture files (torn by a crash).
        public var tornBytes: Int
        /// Video tracks beyond `GridOptions.maxTiles`, not in `grid.webm`.
        public var tracksLeftOutOfGrid = 0
    }

    public static func export(directory: String, options: ExportOptions = ExportOptions()) throws -> Result {
        MediaLog.quiet()
        let index = try RecordingIndex.read(directory: directory)
        let events = RecordingEvent.read(directory: directory)
        let summaries = try placeOnClock(index: index, directory: directory)
        var files: [String] = []
        for p in index.participants {
            let own = summaries.filter { $0.info.participant == p && $0.frames > 0 }
            guard !own.isEmpty else { continue }
            let webm = own.allSatisfy { ["vp8", "opus"].contains($0.info.spec.codec.lowercased()) }
            let path = directory + "/" + RecordingIndex.safeName(p) + (webm ? ".webm" : ".mkv")
            try writeAtomically(path) { try writeParticipant(own, directory: directory, to: $0, format: webm ? "webm" : "matroska") }
            files.append(path)
        }
        let audio = summaries.filter { $0.info.spec.codec.lowercased() == "opus" && $0.frames > 0 }
        var mix: String?
        if !audio.isEmpty {
            let path = directory + "/mix.ogg"
            try writeAtomically(path) { try writeMix(audio, directory: directory, events: events, startMillis: index.startedAtMillis, to: $0) }
            files.append(path)
            mix = path
        }
        var result = Result(files: files, tornBytes: summaries.reduce(0) { $0 + $1.tornBytes })
        if let grid = options.grid, summaries.contains(where: { $0.info.spec.kind == .video && $0.frames > 0 }) {
            let path = directory + "/grid.webm"
            try writeAtomically(path) {
                result.tracksLeftOutOfGrid = try writeGrid(summaries, directory: directory, events: events, startMillis: index.startedAtMillis,
                                                           mix: mix, options: grid, to: $0)
            }
            result.files.append(path)
        }
        return result
    }

    /// Writes `path` through a hidden temporary name in the same directory
    /// and renames it into place: a reader, or a second export of the same
    /// recording (the server's and a worker's), never sees a half-written file.
    static func writeAtomically(_ path: String, _ body: (String) throws -> Void) throws {
        let cut = path.lastIndex(of: "/")
        let dir = cut.map { String(path[..<$0]) } ?? "."
        let name = cut.map { String(path[path.index(after: $0)...]) } ?? path
        let temporary = dir + "/." + name + ".partial-\(getpid())"
        do { try body(temporary) } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw RecordError.system(function: "rename", path: path, errno: e)
        }
    }

    // MARK: Pass 1: place every track on the shared clock

    /// Reads every track once and works out the time of its frames on the
    /// recording's clock. Tracks of one participant with sender reports
    /// share the sender's wall clock (that is what lines audio up with
    /// video); that clock is placed on the recording's by the smallest
    /// arrival delay seen. A track without reports is placed by its own
    /// arrivals.
    static func placeOnClock(index: RecordingIndex, directory: String) throws -> [TrackSummary] {
        var summaries: [TrackSummary] = []
        for t in index.tracks {
            guard let source = try FrameSource(track: t, directory: directory) else { continue }
            var s = TrackSummary(info: t)
            while let f = try source.next() {
                if s.frames == 0 { s.firstTimestamp = f.timestamp }
                s.frames += 1
                s.lastTimestamp = max(s.lastTimestamp, f.timestamp)
                s.minDelta = min(s.minDelta, Double(f.arrivalNanos) / 1e9 - Double(f.timestamp) / s.rate)
                if s.firstKeyframe.isEmpty && f.isKeyframe && t.spec.kind == .video { s.firstKeyframe = f.data }
            }
            if let sr = source.firstSR, s.frames > 0 {
                let rtp = JitterBuffer.extend(UInt64(sr.rtpTimestamp), bits: 32, near: s.firstTimestamp)
                s.mapping = (Double(sr.ntpTimestamp >> 32) + Double(sr.ntpTimestamp & 0xFFFF_FFFF) / 4_294_967_296, rtp)
            }
            s.parameterSets = source.parameterSets
            s.tornBytes = source.tornBytes
            summaries.append(s)
        }
        // arrival − sender time = (arrival − ts/rate) − (sender time − ts/rate), the latter constant per track.
        var offset: [String: Double] = [:]
        for s in summaries where s.frames > 0 {
            let d = s.minDelta - (s.senderSeconds(s.firstTimestamp) - Double(s.firstTimestamp) / s.rate)
            offset[s.domain] = min(offset[s.domain] ?? .infinity, d)
        }
        let start = Double(index.startedAtMillis) / 1000
        for i in summaries.indices { summaries[i].offset = (offset[summaries[i].domain] ?? 0) - start }
        return summaries
    }

    /// A track's frames in decode (sequence) order with their times on the
    /// recording's clock (ns since its start), read a few frames ahead.
    ///
    /// RTP carries one timestamp per frame, the presentation time (RFC 6184
    /// §5.1), and no decode time. H.264 with B-frames sends frames in decode
    /// order, so presentation times go back and forth; a muxer needs decode
    /// times that only go forward and never pass the presentation time.
    /// For H.264 they are made up: the k-th frame's decode time is the
    /// (k − `reorderDelay`)-th smallest presentation time (a frame is shown
    /// at most `reorderDelay` frames after it is decoded: x264's B-pyramids
    /// need 2), found within `reorderWindow` frames read ahead; the first
    /// frames get decode times 1 µs apart just before the first one shown.
    /// Matroska stores presentation times only, so players see RTP's.
    final class TimedSource {
        static let reorderWindow = 8
        static let reorderDelay = 4
        let summary: TrackSummary
        private let source: FrameSource
        /// Whether frames may come out of presentation order (H.264: B-frames).
        let reorders: Bool
        /// Frames read, in decode order; the first is `current`.
        private var ahead: [(frame: MediaFrame, time: Int64)] = []
        /// Presentation times of the frames read and not yet placed in order.
        private var unplaced: [Int64] = []
        /// The last `reorderDelay + 1` presentation times placed in order.
        private var placed: [Int64] = []
        private var index = -1
        private(set) var current: (frame: MediaFrame, time: Int64)?
        /// `current`'s decode time (its time, unless the codec reorders).
        private(set) var decodeTime: Int64 = 0
        var following: (frame: MediaFrame, time: Int64)? { ahead.count > 1 ? ahead[1] : nil }

        init(_ s: TrackSummary, directory: String) throws {
            summary = s
            guard let f = try FrameSource(track: s.info, directory: directory) else { throw RecordError.export("\(s.info.id): no depacketizer") }
            source = f
            reorders = s.info.spec.codec.lowercased() == "h264"
            try advance()
        }

        private func read() throws -> (frame: MediaFrame, time: Int64)? {
            guard let f = try source.next() else { return nil }
            return (f, Int64(((summary.senderSeconds(f.timestamp) + summary.offset) * 1e9).rounded()))
        }

        /// Moves to the next frame (`current` nil at the end).
        func advance() throws {
            if !ahead.isEmpty { ahead.removeFirst() }
            while ahead.count <= (reorders ? Self.reorderWindow : 1), let f = try read() {
                ahead.append(f)
                unplaced.append(f.time)
            }
            current = ahead.first
            guard let c = current else { return }
            index += 1
            guard reorders else { decodeTime = c.time; return }
            let smallest = unplaced.indices.min { unplaced[$0] < unplaced[$1] }!
            placed.append(unplaced.remove(at: smallest))
            if placed.count > Self.reorderDelay + 1 { placed.removeFirst() }
            decodeTime = index >= Self.reorderDelay ? placed[0] : placed[0] - Int64(Self.reorderDelay - index) * 1000
        }
    }

    /// The index of the source whose current frame comes first (by time, then track order).
    static func earliest(_ sources: [TimedSource]) -> Int? {
        var best: Int?
        for (i, s) in sources.enumerated() {
            guard let c = s.current else { continue }
            if let b = best, let bc = sources[b].current, bc.time <= c.time { continue }
            best = i
        }
        return best
    }

    // MARK: Pass 2: per participant

    static let microseconds = Rational(1, 1_000_000)

    static func writeParticipant(_ tracks: [TrackSummary], directory: String, to path: String, format: String) throws {
        do {
            let muxer = try Muxer(format: format, path: path)
            var streams: [Int] = []
            for t in tracks {
                var p = StreamParameters(codec: t.info.spec.codec.lowercased(), timeBase: microseconds)
                if t.info.spec.kind == .audio {
                    p.sampleRate = t.info.spec.clockRate
                    p.channels = max(1, t.info.spec.channels)
                    if t.info.spec.codec.lowercased() == "opus" { p.extradata = OpusDecoder.identificationHeader(channels: p.channels, preSkip: 0) }
                } else {
                    if let size = BitstreamProbe.videoSize(codec: t.info.spec.codec.lowercased(), frame: t.firstKeyframe) {
                        p.width = size.width; p.height = size.height
                    }
                    p.extradata = t.parameterSets
                }
                streams.append(try muxer.addStream(p))
            }
            try muxer.writeHeader()
            // Interleave by time (a merge of the tracks); within a stream, decode times only go forward.
            let sources = try tracks.map { try TimedSource($0, directory: directory) }
            var last = [Int64](repeating: .min, count: tracks.count)
            while let i = earliest(sources), let (frame, time) = sources[i].current {
                let us = max(0, time) / 1000
                let dts = sources[i].reorders ? min(us, sources[i].decodeTime / 1000) : us
                if dts > last[i] {
                    last[i] = dts
                    // Duration: up to the next frame, at most 120 ms (the longest Opus packet) for audio.
                    let next = sources[i].following?.time ?? time + 20_000_000
                    var duration = max(0, next - time) / 1000
                    if tracks[i].info.spec.kind == .audio { duration = min(duration, 120_000) }
                    try muxer.write(frame.data, stream: streams[i], pts: us, dts: dts, duration: duration,
                                    keyframe: frame.isKeyframe, timeBase: microseconds)
                }
                try sources[i].advance()
            }
            try muxer.writeTrailer()
        } catch let e as MediaError { throw RecordError.export("\(path): \(e)") }
    }

    // MARK: Pass 2: the room mix

    static let mixRate = 48_000
    static let mixFrame = 960  // 20 ms

    /// Decodes every Opus track with libopus, adds each at its place on the
    /// recording's clock (silent while muted and where packets are missing),
    /// and encodes the sum to one mono Opus track in Ogg. The tracks are
    /// merged by time, so every sample before the latest frame's start is
    /// final: it is encoded and let go.
    static func writeMix(_ tracks: [TrackSummary], directory: String, events: [RecordingEvent], startMillis: Int64, to path: String) throws {
        do {
            let encoder = try OpusEncoder(channels: 1, bitRate: 64_000)
            let preSkip = encoder.lookahead
            let muxer = try Muxer(format: "ogg", path: path)
            var p = StreamParameters(codec: "opus", timeBase: Rational(1, Int32(mixRate)))
            p.sampleRate = mixRate
            p.channels = 1
            p.extradata = OpusDecoder.identificationHeader(channels: 1, preSkip: preSkip)
            let stream = try muxer.addStream(p)
            try muxer.writeHeader()
            // The samples from `base` on (sample 0 is the recording's start); what is before is encoded.
            var mix: [Float] = []
            var base = 0
            func emit(upTo end: Int) throws {
                while base + mixFrame <= end {
                    if mix.count < mixFrame { mix += repeatElement(0, count: mixFrame - mix.count) }
                    var chunk = Array(mix[0..<mixFrame])
                    for i in chunk.indices { chunk[i] = min(1, max(-1, chunk[i])) }
                    let packet = try encoder.encode(chunk)
                    try muxer.write(packet, stream: stream, pts: Int64(base - preSkip), duration: Int64(mixFrame), keyframe: true,
                                    timeBase: Rational(1, Int32(mixRate)))
                    mix.removeFirst(mixFrame)
                    base += mixFrame
                }
            }
            let sources = try tracks.map { try TimedSource($0, directory: directory) }
            let decoders = try tracks.map { _ in try OpusDecoder(channels: 1) }
            let muted = tracks.map { mutedIntervals(track: $0.info.id, events: events, startMillis: startMillis) }
            var end = 0
            while let i = earliest(sources), let (frame, time) = sources[i].current {
                try sources[i].advance()
                guard let pcm = try? decoders[i].decode(frame.data) else { continue }
                let at = Int((Double(time) / 1e9 * Double(mixRate)).rounded())
                try emit(upTo: at)
                end = max(end, at + pcm.count)
                if end - base > mix.count { mix += repeatElement(0, count: end - base - mix.count) }
                for (k, s) in pcm.enumerated() where at + k >= base {
                    let ns = Int64(at + k) * 1_000_000_000 / Int64(mixRate)
                    if muted[i].contains(where: { $0.contains(ns) }) { continue }
                    mix[at + k - base] += s
                }
            }
            // The encoder's lookahead is made up with silence at the end (and skipped by players at the start).
            let total = end + preSkip
            try emit(upTo: total + mixFrame - 1)
            try muxer.writeTrailer()
        } catch let e as MediaError { throw RecordError.export("\(path): \(e)") }
    }

    /// The times (ns since the start) a track was muted, from `mute`/`unmute` events.
    static func mutedIntervals(track: String, events: [RecordingEvent], startMillis: Int64) -> [Range<Int64>] {
        var out: [Range<Int64>] = []
        var since: Int64?
        for e in events where e.track == track {
            let t = (e.atMillis - startMillis) * 1_000_000
            if e.kind == .mute, since == nil { since = t }
            if e.kind == .unmute, let s = since { out.append(s..<max(s, t)); since = nil }
        }
        if let s = since { out.append(s..<Int64.max) }
        return out
    }
}
