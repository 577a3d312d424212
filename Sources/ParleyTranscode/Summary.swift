import Foundation

/// The summary of a finished transcode that `parley transcode` prints at
/// the end: `--json` (``json(_:)``, ``errorJSON(_:)``) or text (``text(_:)``).
public enum Summary {
    /// The `--json` summary as a JSON object.
    public static func object(_ r: TranscodeResult) -> [String: Any] {
        func rend(_ v: RenditionResult) -> [String: Any] {
            var d: [String: Any] = ["name": v.name, "type": v.kind, "codecs": v.codecs, "segments": v.segments.count,
                                    "target_bitrate": v.targetBitRate, "average_bitrate": v.averageBitRate,
                                    "peak_bitrate": v.peakBitRate, "bytes": v.totalBytes + v.initBytes]
            if v.kind == "video" { d["width"] = v.width; d["height"] = v.height }
            return d
        }
        var all = r.video.map(rend)
        if let a = r.audio { all.append(rend(a)) }
        return ["ok": true, "output": r.output, "master": r.output + "/master.m3u8", "format": r.format.rawValue,
                "duration": (r.duration * 1000).rounded() / 1000, "frames": r.frames,
                "elapsed": (r.elapsed * 1000).rounded() / 1000,
                "speed": r.elapsed > 0 ? ((r.duration / r.elapsed) * 100).rounded() / 100 : 0,
                "segment_seconds": r.segmentSeconds, "renditions": all, "thumbnails": r.thumbnails.count,
                "source_video_range": r.sourceVideoRange.rawValue, "video_range": VideoRange.sdr.rawValue,
                "tone_mapped": r.toneMapped]
    }

    /// ``object(_:)`` as one line of JSON with sorted keys.
    public static func json(_ r: TranscodeResult) -> String {
        let d = try! JSONSerialization.data(withJSONObject: object(r), options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: d, as: UTF8.self)
    }

    /// The line that says an HDR source was tone-mapped.
    public static func toneMapNote(_ r: TranscodeResult) -> String {
        "HDR (\(r.sourceVideoRange.rawValue), BT.2020) source tone-mapped to SDR (BT.709, 8-bit)"
    }

    /// `{"error":…,"ok":false}`: the `--json` answer when the transcode failed.
    public static func errorJSON(_ message: String) -> String {
        let d = try! JSONSerialization.data(withJSONObject: ["ok": false, "error": message], options: [.sortedKeys])
        return String(decoding: d, as: UTF8.self)
    }

    /// The human-readable summary: the master playlist, speed, one line per rendition.
    public static func text(_ r: TranscodeResult) -> String {
        var s = String(format: "%@/master.m3u8: %.2f s, %d frames in %.1f s (%.2fx)\n", r.output, r.duration, r.frames,
                       r.elapsed, r.elapsed > 0 ? r.duration / r.elapsed : 0)
        for v in r.video {
            s += String(format: "  %-14@ %5dx%-5d target %6d k  avg %6d k  peak %6d k  %d segments\n",
                        v.name, v.width, v.height, v.targetBitRate / 1000, v.averageBitRate / 1000, v.peakBitRate / 1000,
                        v.segments.count)
        }
        if let a = r.audio {
            s += String(format: "  %-14@ AAC-LC stereo   avg %6d k  %d segments\n", "audio", a.averageBitRate / 1000, a.segments.count)
        }
        return s
    }
}
