import Foundation
import XCTest

// Judging exported media with tools nobody here wrote: ffprobe for streams
// and durations, ffmpeg to decode, and a Goertzel detector for tones.
// Shared by the recording tests (ParleyRecordTests, ParleyServerTests).

/// ffprobe's view of a file: format duration (the end, in seconds from 0),
/// start time, and (codec_type, codec_name) per stream.
public func probe(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> (duration: Double, streams: [String], start: Double) {
    let r = try runTool("ffprobe", ["-v", "error", "-show_entries", "format=duration,start_time:stream=codec_type,codec_name", "-of", "json", path])
    XCTAssertEqual(r.status, 0, r.err, file: file, line: line)
    let j = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
    let format = j?["format"] as? [String: Any]
    let duration = Double((format?["duration"] as? String) ?? "") ?? 0
    let start = Double((format?["start_time"] as? String) ?? "") ?? 0
    let streams = (j?["streams"] as? [[String: Any]] ?? []).map { "\($0["codec_type"] ?? "?"):\($0["codec_name"] ?? "?")" }
    return (duration, streams.sorted(), start)
}

/// Mono 48 kHz float samples of an audio file, decoded by ffmpeg.
public func decodePCM(_ path: String) throws -> [Float] {
    let r = try runProcess("ffmpeg", ["-v", "error", "-i", path, "-f", "f32le", "-ac", "1", "-ar", "48000", "-"])
    XCTAssertEqual(r.status, 0, String(decoding: r.err, as: UTF8.self))
    return r.out.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

/// The amplitude of the `hz` component of `samples` (Goertzel, 48 kHz).
public func toneAmplitude(_ samples: ArraySlice<Float>, hz: Double) -> Double {
    let w = 2 * Double.pi * hz / 48_000, coeff = 2 * cos(w)
    var s1 = 0.0, s2 = 0.0
    for x in samples {
        let s0 = Double(x) + coeff * s1 - s2
        s2 = s1; s1 = s0
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2 * sqrt(max(0, power)) / Double(samples.count)
}

