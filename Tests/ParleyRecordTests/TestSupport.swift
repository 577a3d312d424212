import CFFmpeg
import Foundation
import ParleyCore
import ParleyMedia
import ParleyRecord
import ParleyRTP
import ParleyTestSupport
import XCTest

// Real peers for the recorder: libopus tones and libav video, packetized as
// a WebRTC sender would (RFC 7587, RFC 7741, RFC 6184), with sender
// reports, and arrival times on the recording's clock.

/// One packet as the relay's tap would hand it over.
struct Sent {
    var arrivalNanos: Int64
    var rtcp: Bool
    var bytes: [UInt8]
}

/// A sender: its own wall clock (skewed from ours) and RTP clock.
struct Sender {
    var ssrc: UInt32
    var payloadType: UInt8
    var clockRate: Int
    /// The sender's wall clock minus ours, in seconds: SRs carry its clock, not ours.
    var skew: Double = 1234.5
    /// RTP timestamp at the sender's first frame.
    var timestampBase: UInt32 = 3_000_000_000  // wraps during a test at 90 kHz
    var sequenceBase: UInt16 = 65_000  // wraps too

    func rtp(_ seq: Int, _ ts: Int64, marker: Bool, _ payload: [UInt8]) -> [UInt8] {
        let h = RTPHeader(marker: marker, payloadType: payloadType, sequenceNumber: UInt16(truncatingIfNeeded: Int(sequenceBase) + seq),
                          timestamp: UInt32(truncatingIfNeeded: Int64(timestampBase) + ts), ssrc: ssrc)
        return try! RTPPacket(header: h, payload: payload).encoded()
    }

    /// A sender report for media time `seconds` after the sender's first frame, which it sent at our wall time `startNanos`.
    func senderReport(at seconds: Double, startNanos: Int64) -> [UInt8] {
        let wall = Double(startNanos) / 1e9 + seconds + skew + 2_208_988_800
        let ntp = UInt64(wall) << 32 | UInt64((wall - wall.rounded(.down)) * 4_294_967_296)
        let rtp = UInt32(truncatingIfNeeded: Int64(timestampBase) + Int64(seconds * Double(clockRate)))
        return try! RTCPPacket.senderReport(RTCPSenderReport(ssrc: ssrc, ntpTimestamp: ntp, rtpTimestamp: rtp, packetCount: 0, octetCount: 0)).encoded()
    }
}

/// `seconds` of a sine at `hz`, as 20 ms Opus packets (RFC 7587).
func opusTone(hz: Double, seconds: Double, amplitude: Float = 0.3) throws -> [[UInt8]] {
    let encoder = try OpusEncoder(channels: 1, bitRate: 48_000)
    var packets: [[UInt8]] = []
    for frame in 0..<Int(seconds * 50) {
        let pcm = (0..<960).map { i in amplitude * Float(sin(2 * Double.pi * hz * Double(frame * 960 + i) / 48_000)) }
        packets.append(try encoder.encode(pcm))
    }
    return packets
}

/// `seconds` of 320×240 video at 25 fps from a libav encoder (`libvpx` or
/// `libx264`), one keyframe a second; returns (data, keyframe) per frame.
func encodedVideo(codec: String, seconds: Double) throws -> [(data: [UInt8], keyframe: Bool)] {
    try encodedVideoWithTimes(codec: codec, seconds: seconds).map { ($0.data, $0.keyframe) }
}

/// The same with each frame's presentation time in frames (25 a second),
/// in decode order; `bFrames` > 0 makes libx264 reorder (B-pyramid).
func encodedVideoWithTimes(codec: String, seconds: Double, bFrames: Int = 0) throws -> [(data: [UInt8], keyframe: Bool, pts: Int64)] {
    var v = Encoder.Video(width: 320, height: 240, timeBase: Rational(1, 25), frameRate: Rational(25, 1))
    v.codec = codec
    v.gopSize = 25
    v.globalHeader = false  // SPS/PPS in band, as WebRTC sends them
    v.bitRate = 300_000
    v.options = codec == "libx264" ? ["preset": "ultrafast", "tune": "zerolatency"] : ["deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"]
    if bFrames > 0 { v.options = ["preset": "veryfast", "bf": String(bFrames), "b_strategy": "0"] }
    return try encode(v, frames: Int(seconds * 25)) { f, i in
        for plane in 0..<3 {
            let h = plane == 0 ? 240 : 120, w = plane == 0 ? 320 : 160
            let stride = Int(f.pointer.pointee.linesize.0), cstride = Int(f.pointer.pointee.linesize.1)
            let base = plane == 0 ? f.pointer.pointee.data.0! : plane == 1 ? f.pointer.pointee.data.1! : f.pointer.pointee.data.2!
            for y in 0..<h { for x in 0..<w { base[y * (plane == 0 ? stride : cstride) + x] = UInt8(truncatingIfNeeded: x + y + i * 4 + plane * 60) } }
        }
    }
}

/// `frames` pictures painted by `paint` (frame, index), encoded with `v`; (data, keyframe, pts) per frame in decode order.
func encode(_ v: Encoder.Video, frames: Int, paint: (Frame, Int) -> Void) throws -> [(data: [UInt8], keyframe: Bool, pts: Int64)] {
    let encoder = try Encoder(video: v)
    var out: [(data: [UInt8], keyframe: Bool, pts: Int64)] = []
    let packet = Packet()
    func drain() throws {
        while try encoder.receive(into: packet) {
            out.append((Array(packet.data), packet.isKeyframe, packet.pts))
            packet.unref()
        }
    }
    for i in 0..<frames {
        let f = try Frame(width: v.width, height: v.height, pixelFormat: AV_PIX_FMT_YUV420P)
        paint(f, i)
        f.pts = Int64(i)
        _ = try encoder.send(f)
        try drain()
    }
    _ = try encoder.send(nil)
    try drain()
    return out
}

/// RFC 7741 packets of one VP8 frame: a 1-byte descriptor (S on the first), at most `mtu` bytes of payload each.
func packetizeVP8(_ frame: [UInt8], mtu: Int = 1000) -> [[UInt8]] {
    stride(from: 0, to: frame.count, by: mtu).map { o in [o == 0 ? 0x10 : 0x00] + frame[o..<min(o + mtu, frame.count)] }
}

/// RFC 6184 packets of one Annex B access unit: SPS and PPS together as a
/// STAP-A, small NAL units alone, large ones as FU-A fragments.
func packetizeH264(_ accessUnit: [UInt8], mtu: Int = 1000) -> [[UInt8]] {
    var nals: [[UInt8]] = []
    var i = 0, start = -1
    while i + 3 <= accessUnit.count {
        if accessUnit[i] == 0, accessUnit[i + 1] == 0, accessUnit[i + 2] == 1 {
            if start >= 0 { nals.append(trimZeros(Array(accessUnit[start..<i]))) }
            start = i + 3; i += 3
        } else { i += 1 }
    }
    if start >= 0 { nals.append(Array(accessUnit[start...])) }
    var out: [[UInt8]] = []
    var stap: [UInt8] = []
    for n in nals where !n.isEmpty {
        let type = n[0] & 0x1F
        if type == 7 || type == 8 {
            if stap.isEmpty { stap = [n[0] & 0xE0 | 24] }
            stap += [UInt8(n.count >> 8), UInt8(n.count & 0xFF)] + n
            continue
        }
        if !stap.isEmpty { out.append(stap); stap = [] }
        if n.count <= mtu { out.append(n); continue }
        let body = Array(n[1...])
        for o in stride(from: 0, to: body.count, by: mtu) {
            let s: UInt8 = o == 0 ? 0x80 : 0, e: UInt8 = o + mtu >= body.count ? 0x40 : 0
            out.append([n[0] & 0xE0 | 28, s | e | type] + body[o..<min(o + mtu, body.count)])
        }
    }
    if !stap.isEmpty { out.append(stap) }
    return out
}

private func trimZeros(_ n: [UInt8]) -> [UInt8] {
    var n = n
    while n.last == 0 { n.removeLast() }  // the leading zero of a 4-byte start code
    return n
}

/// The packets of an audio track: 20 ms Opus packets from `startSeconds`
/// (our clock, after the recording start `startNanos`), an SR every second,
/// 20 ms network delay.
func audioTrack(_ s: Sender, packets: [[UInt8]], startSeconds: Double, startNanos: Int64) -> [Sent] {
    var out: [Sent] = []
    let senderStart = startNanos + Int64(startSeconds * 1e9)
    for (i, p) in packets.enumerated() {
        let t = Double(i) * 0.02
        let arrival = senderStart + Int64((t + 0.02) * 1e9)
        if i % 50 == 10 { out.append(Sent(arrivalNanos: arrival, rtcp: true, bytes: s.senderReport(at: t, startNanos: senderStart))) }
        out.append(Sent(arrivalNanos: arrival, rtcp: false, bytes: s.rtp(i, Int64(i * 960), marker: i == 0, p)))
    }
    return out
}

/// The packets of a video track at 25 fps from `startSeconds`, packetized by `packetize`.
/// `timestamps`: each frame's presentation time in frames (RTP timestamp ÷ 3600), when it is not its index (B-frames).
func videoTrack(_ s: Sender, frames: [(data: [UInt8], keyframe: Bool)], timestamps: [Int64]? = nil, startSeconds: Double, startNanos: Int64,
                packetize: ([UInt8]) -> [[UInt8]]) -> [Sent] {
    var out: [Sent] = []
    var seq = 0
    let senderStart = startNanos + Int64(startSeconds * 1e9)
    // An encoder that reorders sends a frame once it has captured it: frames leave `lag` frames late.
    let lag = timestamps.map { ts in ts.enumerated().map { Double($0.element) - Double($0.offset) }.max() ?? 0 } ?? 0
    for (i, f) in frames.enumerated() {
        let t = (Double(i) + max(0, lag)) / 25
        let arrival = senderStart + Int64((t + 0.02) * 1e9)
        if i % 25 == 5 { out.append(Sent(arrivalNanos: arrival, rtcp: true, bytes: s.senderReport(at: t, startNanos: senderStart))) }
        let parts = packetize(f.data)
        for (k, p) in parts.enumerated() {
            out.append(Sent(arrivalNanos: arrival, rtcp: false, bytes: s.rtp(seq, (timestamps?[i] ?? Int64(i)) * 3600, marker: k == parts.count - 1, p)))
            seq += 1
        }
    }
    return out
}

/// Drops `lossRate` of the RTP packets and swaps neighbours at `reorderRate`, from a fixed seed.
func impair(_ packets: [Sent], lossRate: Double, reorderRate: Double, seed: UInt64) -> [Sent] {
    var rng = SplitMix64(seed: seed)
    var out = packets.filter { $0.rtcp || Double(rng.next() % 10_000) / 10_000 >= lossRate }
    var i = 0
    while i + 1 < out.count {
        if Double(rng.next() % 10_000) / 10_000 < reorderRate {
            // Swap the arrival times too, so the pair stays swapped in arrival order.
            (out[i].arrivalNanos, out[i + 1].arrivalNanos) = (out[i + 1].arrivalNanos, out[i].arrivalNanos)
            out.swapAt(i, i + 1)
            i += 2
        } else { i += 1 }
    }
    return out
}

/// Feeds packets to a recording in arrival order; returns how many it refused.
@discardableResult
func feed(_ r: Recording, _ ssrcOf: (Sent) -> UInt32, _ packets: [Sent]) -> Int {
    var refused = 0
    for p in packets {
        let ok = p.bytes.withUnsafeBytes {
            p.rtcp ? r.captureRTCP(ssrc: ssrcOf(p), $0, arrivalNanos: p.arrivalNanos) : r.captureRTP(ssrc: ssrcOf(p), $0, arrivalNanos: p.arrivalNanos)
        }
        if !ok { refused += 1 }
        // The queue is bounded: give the recorder thread time to drain (pacing, not an assertion).
        if !ok { usleep(2_000) }
    }
    return refused
}

/// Waits until `onStop` has run for the recording (hang guard only).
final class StopWaiter: @unchecked Sendable {
    private let c = NSCondition()
    private var stopped: [String: StopReason] = [:]
    var callback: @Sendable (String, StopReason) -> Void { { id, r in self.c.withLock { self.stopped[id] = r; self.c.broadcast() } } }
    func wait(_ id: String, timeout: Double = 30) -> StopReason? {
        let deadline = Date().addingTimeInterval(timeout)
        return c.withLock {
            while stopped[id] == nil && c.wait(until: deadline) {}
            return stopped[id]
        }
    }
}

/// A published track as the relay names it (`participant/ssrc`), with the usual WebRTC clock for its codec.
func roomTrack(_ participant: String, _ ssrc: UInt32, _ codec: String, payloadType: UInt8) -> RoomTrack {
    let video = ["vp8", "h264"].contains(codec.lowercased())
    let spec = TrackDescription(kind: video ? .video : .audio, codec: codec, payloadType: payloadType,
                                clockRate: video ? 90_000 : 48_000, channels: video ? 1 : 2, ssrc: ssrc)
    return RoomTrack(participant: participant, spec: spec, ssrc: ssrc, muted: false)
}

/// `seconds` of one solid YUV colour at 25 fps from libvpx (`width`×`height`), one keyframe a second.
func solidVP8(y: UInt8, u: UInt8, v: UInt8, width: Int = 320, height: Int = 240, seconds: Double) throws -> [(data: [UInt8], keyframe: Bool)] {
    var settings = Encoder.Video(width: width, height: height, timeBase: Rational(1, 25), frameRate: Rational(25, 1))
    settings.codec = "libvpx"
    settings.gopSize = 25
    settings.globalHeader = false
    settings.bitRate = 200_000
    settings.options = ["deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"]
    return try encode(settings, frames: Int(seconds * 25)) { f, _ in
        let p = f.pointer.pointee
        memset(p.data.0!, Int32(y), Int(p.linesize.0) * height)
        memset(p.data.1!, Int32(u), Int(p.linesize.1) * height / 2)
        memset(p.data.2!, Int32(v), Int(p.linesize.2) * height / 2)
    }.map { ($0.data, $0.keyframe) }
}

/// Every decoded picture of the first video stream of `path` as (seconds, Y, U, V planes at full and half size), yuv420p.
func decodePictures(_ path: String) throws -> [(time: Double, width: Int, height: Int, planes: [[UInt8]])] {
    let demuxer = try Demuxer(url: path)
    guard let s = demuxer.bestStream(.video) else { return [] }
    let decoder = try Decoder(demuxer: demuxer, stream: s)
    var out: [(time: Double, width: Int, height: Int, planes: [[UInt8]])] = []
    let packet = Packet(), frame = Frame()
    func take() throws {
        while try decoder.receive(into: frame) {
            let p = frame.pointer.pointee
            let w = frame.width, h = frame.height
            var planes: [[UInt8]] = []
            for (i, (data, stride)) in [(p.data.0, p.linesize.0), (p.data.1, p.linesize.1), (p.data.2, p.linesize.2)].enumerated() {
                let pw = i == 0 ? w : w / 2, ph = i == 0 ? h : h / 2
                var plane = [UInt8](repeating: 0, count: pw * ph)
                for row in 0..<ph { for x in 0..<pw { plane[row * pw + x] = data![row * Int(stride) + x] } }
                planes.append(plane)
            }
            out.append((Double(frame.bestEffortTimestamp) * s.timeBase.double, w, h, planes))
            frame.unref()
        }
    }
    while try demuxer.read(into: packet) {
        if packet.streamIndex == s.index { _ = try decoder.send(packet); try take() }
        packet.unref()
    }
    _ = try decoder.send(nil)
    try take()
    return out
}
