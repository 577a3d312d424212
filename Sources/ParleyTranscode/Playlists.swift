import Foundation

/// HLS playlists (RFC 8216) for a finished ladder: the master, one media
/// playlist and one I-frame playlist per video rung, the audio playlist.
public enum Playlists {
    static let audioGroup = "aac"

    static func extinf(_ d: Double) -> String { String(format: "#EXTINF:%.6f,", d) }

    /// EXT-X-TARGETDURATION: every EXTINF rounded to the nearest integer must not exceed it.
    static func targetDuration(_ segs: [Segment]) -> Int {
        max(1, segs.map { Int($0.duration.rounded()) }.max() ?? 1)
    }

    static func header(_ r: TranscodeResult, _ segs: [Segment], iframes: Bool) -> String {
        var s = "#EXTM3U\n"
        s += "#EXT-X-VERSION:\(r.format == .fmp4 ? 7 : 4)\n"
        s += "#EXT-X-TARGETDURATION:\(targetDuration(segs))\n"
        s += "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        if iframes { s += "#EXT-X-I-FRAMES-ONLY\n" }
        if r.format == .fmp4 { s += "#EXT-X-MAP:URI=\"init.mp4\"\n" }
        return s
    }

    public static func media(_ r: TranscodeResult, _ rendition: RenditionResult) -> String {
        var s = header(r, rendition.segments, iframes: false)
        for seg in rendition.segments { s += extinf(seg.duration) + "\n" + seg.file + "\n" }
        return s + "#EXT-X-ENDLIST\n"
    }

    /// Each segment begins with an IDR: the I-frame playlist points at it with a byte range.
    public static func iframes(_ r: TranscodeResult, _ rendition: RenditionResult) -> String {
        var s = header(r, rendition.segments, iframes: true)
        for seg in rendition.segments {
            s += extinf(seg.duration) + "\n#EXT-X-BYTERANGE:\(seg.keyframeBytes)@0\n" + seg.file + "\n"
        }
        return s + "#EXT-X-ENDLIST\n"
    }

    static func iframePeak(_ rendition: RenditionResult) -> Int {
        rendition.segments.map { $0.duration > 0 ? Int((Double($0.keyframeBytes) * 8 / $0.duration).rounded(.up)) : 0 }.max() ?? 0
    }

    public static func master(_ r: TranscodeResult) -> String {
        var s = "#EXTM3U\n#EXT-X-VERSION:\(r.format == .fmp4 ? 7 : 4)\n#EXT-X-INDEPENDENT-SEGMENTS\n\n"
        if r.audio != nil {
            s += "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"\(audioGroup)\",NAME=\"Main\",LANGUAGE=\"und\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\n"
        }
        let aPeak = r.audio?.peakBitRate ?? 0
        let aAvg = r.audio?.averageBitRate ?? 0
        for v in r.video {
            var codecs = v.codecs
            if r.audio != nil { codecs += ",mp4a.40.2" }
            s += "#EXT-X-STREAM-INF:BANDWIDTH=\(v.peakBitRate + aPeak),AVERAGE-BANDWIDTH=\(v.averageBitRate + aAvg)"
            s += ",CODECS=\"\(codecs)\",RESOLUTION=\(v.width)x\(v.height),FRAME-RATE=\(String(format: "%.3f", r.frameRate))"
            s += ",VIDEO-RANGE=\(VideoRange.sdr.rawValue)"
            if r.audio != nil { s += ",AUDIO=\"\(audioGroup)\"" }
            s += ",CLOSED-CAPTIONS=NONE\n\(v.name)/index.m3u8\n"
        }
        s += "\n"
        for v in r.video {
            s += "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=\(iframePeak(v)),CODECS=\"\(v.codecs)\",RESOLUTION=\(v.width)x\(v.height)"
            s += ",VIDEO-RANGE=\(VideoRange.sdr.rawValue),URI=\"\(v.name)/iframes.m3u8\"\n"
        }
        return s
    }

    static func write(_ r: TranscodeResult, to dir: URL) throws {
        for v in r.video {
            let d = dir.appendingPathComponent(v.name)
            try Data(media(r, v).utf8).write(to: d.appendingPathComponent("index.m3u8"))
            try Data(iframes(r, v).utf8).write(to: d.appendingPathComponent("iframes.m3u8"))
        }
        if let a = r.audio {
            try Data(media(r, a).utf8).write(to: dir.appendingPathComponent("audio/index.m3u8"))
        }
        try Data(master(r).utf8).write(to: dir.appendingPathComponent("master.m3u8"))
    }
}

/// `manifest.json`: per rendition, per segment: index, start, duration, bytes, bitrate, thumbnail.
public enum Manifest {
    struct SegmentEntry: Codable {
        var index: Int; var start: Double; var duration: Double; var bytes: Int; var bitrate: Int
        var file: String; var thumbnail: String?
    }
    struct RenditionEntry: Codable {
        var name: String; var type: String; var width: Int?; var height: Int?
        var codecs: String; var target_bitrate: Int; var average_bitrate: Int; var peak_bitrate: Int
        var playlist: String; var iframe_playlist: String?; var init_segment: String?
        var segments: [SegmentEntry]
    }
    struct Document: Codable {
        var input: String; var duration: Double; var frame_rate: Double; var format: String
        var segment_seconds: Double; var master: String; var created: String
        /// The source's range; the renditions' (always SDR); whether an HDR source was tone-mapped.
        var source_video_range: String; var video_range: String; var tone_mapped: Bool
        var renditions: [RenditionEntry]; var thumbnails: [String]
    }

    static func entry(_ r: TranscodeResult, _ v: RenditionResult, dir: String) -> RenditionEntry {
        let segs = v.segments.map { s in
            SegmentEntry(index: s.index, start: (s.start * 1e6).rounded() / 1e6, duration: (s.duration * 1e6).rounded() / 1e6,
                         bytes: s.bytes, bitrate: s.bitRate, file: "\(dir)/\(s.file)",
                         thumbnail: s.index < r.thumbnails.count ? r.thumbnails[s.index] : nil)
        }
        return RenditionEntry(name: v.name, type: v.kind, width: v.kind == "video" ? v.width : nil,
                              height: v.kind == "video" ? v.height : nil, codecs: v.codecs,
                              target_bitrate: v.targetBitRate, average_bitrate: v.averageBitRate, peak_bitrate: v.peakBitRate,
                              playlist: "\(dir)/index.m3u8", iframe_playlist: v.kind == "video" ? "\(dir)/iframes.m3u8" : nil,
                              init_segment: r.format == .fmp4 ? "\(dir)/init.mp4" : nil, segments: segs)
    }

    static func write(_ r: TranscodeResult, input: String, to dir: URL) throws {
        var entries = r.video.map { entry(r, $0, dir: $0.name) }
        if let a = r.audio { entries.append(entry(r, a, dir: "audio")) }
        let doc = Document(input: input, duration: r.duration, frame_rate: r.frameRate, format: r.format.rawValue,
                           segment_seconds: r.segmentSeconds, master: "master.m3u8",
                           created: ISO8601DateFormatter().string(from: Date()),
                           source_video_range: r.sourceVideoRange.rawValue, video_range: VideoRange.sdr.rawValue,
                           tone_mapped: r.toneMapped, renditions: entries, thumbnails: r.thumbnails)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try enc.encode(doc).write(to: dir.appendingPathComponent("manifest.json"))
    }
}
