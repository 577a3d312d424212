import Glibc
import ParleyCore
import ParleyMedia
import ParleyRTP

/// A frame placed on the recording's clock.
struct TimedFrame {
    var frame: MediaFrame
    /// Nanoseconds since the recording started.
    var time: Int64
}

/// One track's frames, rebuilt from its capture file.
struct ExportTrack {
    var info: RoomTrack
    var frames: [TimedFrame]
    /// H.264: Annex B SPS and PPS.
    var parameterSets: [UInt8]
    var tornBytes: Int
}

/// Turns a recording directory into files players open: one per
/// participant (`NAME.webm` when every track is VP8 or Opus, `NAME.mkv`
/// otherwise) and `mix.ogg`, the room's audio mixed. Works on whatever the
/// capture files hold up to a crash: a torn last block is skipped.
public enum Exporter {
    /// What an export wrote.
    public struct Result: Sendable {
        /// Paths of the files written, participants first, then the mix.
        public var files: [String]
        /// Bytes skipped at the end of capture files (torn by a crash).
        public var tornBytes: Int
    }

    public static func export(directory: String) throws -> Result {
        MediaLog.quiet()
        let index = try RecordingIndex.read(directory: directory)
        let events = RecordingEvent.read(directory: directory)
        let tracks = try placeOnClock(index: index, directory: directory)
        var files: [String] = []
        for p in index.participants {
            let own = tracks.filter { $0.info.participant == p && !$0.frames.isEmpty }
            guard !own.isEmpty else { continue }
            let webm = own.allSatisfy { ["vp8", "opus"].contains($0.info.spec.codec.lowercased()) }
            let path = directory + "/" + RecordingIndex.safeName(p) + (webm ? ".webm" : ".mkv")
            try writeParticipant(own, to: path, format: webm ? "webm" : "matroska")
            files.append(path)
        }
        let audio = tracks.filter { $0.info.spec.codec.lowercased() == "opus" && !$0.frames.isEmpty }
        if !audio.isEmpty {
            let path = directory + "/mix.ogg"
            try writeMix(audio, events: events, startMillis: index.startedAtMillis, to: path)
            files.append(path)
        }
        return Result(files: files, tornBytes: tracks.reduce(0) { $0 + $1.tornBytes })
    }

    // MARK: Depacketize and place on the shared clock

    /// Reads every track, rebuilds its frames and gives each a time on the
    /// recording's clock. Tracks of one participant with sender reports
    /// share the sender's wall clock (that is what lines audio up with
    /// video); that clock is placed on the recording's by the smallest
    /// arrival delay seen. A track without reports is placed by its own
    /// arrivals.
    static func placeOnClock(index: RecordingIndex, directory: String) throws -> [ExportTrack] {
        struct Raw {
            var info: RoomTrack
            var frames: [MediaFrame]
            var mapping: (ntpSeconds: Double, rtp: Int64)?
            var parameterSets: [UInt8]
            var torn: Int
        }
        var raws: [Raw] = []
        for t in index.tracks {
            guard var depacketizer = t.spec.makeDepacketizer() else { continue }
            let contents = try CaptureReader.read(path: directory + "/" + t.captureFile)
            var buffer = JitterBuffer()
            var frames: [MediaFrame] = []
            var firstSR: RTCPSenderReport?
            func take(_ outputs: [JitterOutput]) {
                for o in outputs { if let f = depacketizer.push(o) { frames.append(f) } }
            }
            for p in contents.packets {
                if p.isRTCP {
                    guard firstSR == nil else { continue }
                    p.bytes.withUnsafeBytes { raw in
                        guard let compound = try? RTCPCompoundView(parsing: raw) else { return }
                        for v in compound where v.packetType == RTCP.PacketType.senderReport {
                            if let sr = try? RTCPSenderReport(v), sr.ssrc == t.ssrc { firstSR = sr; return }
                        }
                    }
                    continue
                }
                let parsed: (UInt16, UInt32, Bool, [UInt8], UInt8)? = p.bytes.withUnsafeBytes { raw in
                    guard let v = try? RTPPacketView(parsing: raw) else { return nil }
                    return (v.sequenceNumber, v.timestamp, v.marker, Array(v.payload), v.payloadType)
                }
                guard let (seq, ts, marker, payload, pt) = parsed, pt == t.spec.payloadType else { continue }
                take(buffer.push(sequence: seq, timestamp: ts, marker: marker, payload: payload, arrivalNanos: p.arrivalNanos))
            }
            take(buffer.flush())
            var mapping: (Double, Int64)?
            if let sr = firstSR, let first = frames.first {
                let rtp = JitterBuffer.extend(UInt64(sr.rtpTimestamp), bits: 32, near: first.timestamp)
                mapping = (Double(sr.ntpTimestamp >> 32) + Double(sr.ntpTimestamp & 0xFFFF_FFFF) / 4_294_967_296, rtp)
            }
            let sets = (depacketizer as? H264Depacketizer)?.parameterSets ?? []
            raws.append(Raw(info: t, frames: frames, mapping: mapping, parameterSets: sets, torn: contents.tornBytes))
        }

        // Sender time of a frame, in seconds on its clock domain.
        func senderSeconds(_ r: Raw, _ f: MediaFrame) -> Double {
            let rate = Double(r.info.spec.clockRate)
            if let m = r.mapping { return m.ntpSeconds + Double(f.timestamp - m.rtp) / rate }
            return Double(f.timestamp - (r.frames.first?.timestamp ?? 0)) / rate
        }
        // A clock domain: a participant's reporting tracks, or one track alone.
        func domain(_ r: Raw) -> String { r.mapping != nil ? "p:" + r.info.participant : "t:" + r.info.id }
        var offset: [String: Double] = [:]
        for r in raws {
            for f in r.frames {
                let d = Double(f.arrivalNanos) / 1e9 - senderSeconds(r, f)
                offset[domain(r)] = min(offset[domain(r)] ?? .infinity, d)
            }
        }
        let start = Double(index.startedAtMillis) / 1000
        return raws.map { r in
            let o = offset[domain(r)] ?? 0
            let timed = r.frames.map { TimedFrame(frame: $0, time: Int64(((senderSeconds(r, $0) + o - start) * 1e9).rounded())) }
            return ExportTrack(info: r.info, frames: timed, parameterSets: r.parameterSets, tornBytes: r.torn)
        }
    }

    // MARK: Per participant

    static let microseconds = Rational(1, 1_000_000)

    static func writeParticipant(_ tracks: [ExportTrack], to path: String, format: String) throws {
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
                    let key = t.frames.first { $0.frame.isKeyframe }?.frame.data ?? []
                    if let size = BitstreamProbe.videoSize(codec: t.info.spec.codec.lowercased(), frame: key) { p.width = size.width; p.height = size.height }
                    p.extradata = t.parameterSets
                }
                streams.append(try muxer.addStream(p))
            }
            try muxer.writeHeader()
            // Interleave by time; within a stream, times only go forward.
            var order: [(time: Int64, track: Int, frame: Int)] = []
            for (i, t) in tracks.enumerated() { for (j, f) in t.frames.enumerated() { order.append((max(0, f.time), i, j)) } }
            order.sort { ($0.time, $0.track, $0.frame) < ($1.time, $1.track, $1.frame) }
            var last = [Int64](repeating: -1, count: tracks.count)
            for e in order {
                let us = e.time / 1000
                guard us > last[e.track] else { continue }
                last[e.track] = us
                let frames = tracks[e.track].frames
                let f = frames[e.frame]
                // Duration: up to the next frame, at most 120 ms (the longest Opus packet) for audio.
                let next = e.frame + 1 < frames.count ? frames[e.frame + 1].time : f.time + 20_000_000
                var duration = max(0, next - f.time) / 1000
                if tracks[e.track].info.spec.kind == .audio { duration = min(duration, 120_000) }
                try muxer.write(f.frame.data, stream: streams[e.track], pts: us, duration: duration,
                                keyframe: f.frame.isKeyframe, timeBase: microseconds)
            }
            try muxer.writeTrailer()
        } catch let e as MediaError { throw RecordError.export("\(path): \(e)") }
    }

    // MARK: The room mix

    static let mixRate = 48_000
    static let mixFrame = 960  // 20 ms

    /// Decodes every Opus track with libopus, adds each at its place on the
    /// recording's clock (silent while muted and where packets are missing),
    /// and encodes the sum to one mono Opus track in Ogg.
    static func writeMix(_ tracks: [ExportTrack], events: [RecordingEvent], startMillis: Int64, to path: String) throws {
        do {
            var mix: [Float] = []
            for t in tracks {
                let muted = mutedIntervals(track: t.info.id, events: events, startMillis: startMillis)
                let decoder = try OpusDecoder(channels: 1)
                for f in t.frames {
                    guard let pcm = try? decoder.decode(f.frame.data) else { continue }
                    let at = Int((Double(f.time) / 1e9 * Double(mixRate)).rounded())
                    if at + pcm.count > mix.count { mix += repeatElement(0, count: at + pcm.count - mix.count) }
                    for (k, s) in pcm.enumerated() where at + k >= 0 {
                        let ns = Int64(at + k) * 1_000_000_000 / Int64(mixRate)
                        if muted.contains(where: { $0.contains(ns) }) { continue }
                        mix[at + k] += s
                    }
                }
            }
            let encoder = try OpusEncoder(channels: 1, bitRate: 64_000)
            let preSkip = encoder.lookahead
            let muxer = try Muxer(format: "ogg", path: path)
            var p = StreamParameters(codec: "opus", timeBase: Rational(1, Int32(mixRate)))
            p.sampleRate = mixRate
            p.channels = 1
            p.extradata = OpusDecoder.identificationHeader(channels: 1, preSkip: preSkip)
            let stream = try muxer.addStream(p)
            try muxer.writeHeader()
            // The encoder's lookahead is made up with silence at the end (and skipped by players at the start).
            mix += repeatElement(0, count: preSkip)
            var pos = 0
            while pos < mix.count {
                var chunk = Array(mix[pos..<min(pos + mixFrame, mix.count)])
                chunk += repeatElement(0, count: mixFrame - chunk.count)
                for i in chunk.indices { chunk[i] = min(1, max(-1, chunk[i])) }
                let packet = try encoder.encode(chunk)
                try muxer.write(packet, stream: stream, pts: Int64(pos - preSkip), duration: Int64(mixFrame), keyframe: true,
                                timeBase: Rational(1, Int32(mixRate)))
                pos += mixFrame
            }
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
