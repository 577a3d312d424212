import Foundation
import ParleyMedia

/// What publishers send, made once before the run and shared read-only by
/// every loop: one second of real Opus frames of a 440 Hz tone (encoded by
/// libopus, 20 ms each, cycled), and the bytes of synthetic video packets.
public final class MediaSource: Sendable {
    /// Opus frames, 20 ms each.
    let opusFrames: [[UInt8]]
    /// A video packet's payload bytes (the first packet of a frame starts
    /// with a VP8 payload descriptor with S set, the others without).
    let videoPayload: [UInt8]

    /// RTP payload bytes after our header (28 bytes: fixed header and the
    /// send-time extension) and the SRTP tag (16 at most), so every video
    /// packet is at most 1200 bytes on the wire.
    static let maxVideoPayload = 1200 - LoadRTP.headerSize - 16

    public init() throws {
        let encoder = try OpusEncoder(channels: 2, bitRate: 48_000)
        var frames: [[UInt8]] = []
        let samplesPerFrame = 960
        for f in 0..<50 {
            var pcm = [Float](repeating: 0, count: samplesPerFrame * 2)
            for i in 0..<samplesPerFrame {
                let t = Double(f * samplesPerFrame + i) / 48_000
                let v = Float(0.3 * sin(2 * Double.pi * 440 * t))
                pcm[2 * i] = v
                pcm[2 * i + 1] = v
            }
            frames.append(try encoder.encode(pcm))
        }
        opusFrames = frames
        var g = SystemRandomNumberGenerator()
        videoPayload = (0..<Self.maxVideoPayload).map { _ in UInt8.random(in: 0...255, using: &g) }
    }
}

/// The RTP header every load packet carries: the 12-byte fixed header with
/// X = 1 and an RFC 8285 one-byte extension block holding one element, the
/// sender's CLOCK_REALTIME in nanoseconds (8 bytes, big-endian), from
/// which the receiver (same host clock) takes one-way latency.
enum LoadRTP {
    /// Extension element id of the send time.
    static let sendTimeID: UInt8 = 1
    /// 12 fixed + 4 extension header + 12 body (1 + 8, padded to 4).
    static let headerSize = 28

    @inline(__always)
    static func writeHeader(_ p: UnsafeMutableRawPointer, marker: Bool, payloadType: UInt8, sequence: UInt16,
                            timestamp: UInt32, ssrc: UInt32, sendTime: Int64) {
        p.storeBytes(of: 0x90, toByteOffset: 0, as: UInt8.self) // V=2, X=1
        p.storeBytes(of: (marker ? 0x80 : 0) | payloadType, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: sequence.bigEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: timestamp.bigEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: ssrc.bigEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt16(0xBEDE).bigEndian, toByteOffset: 12, as: UInt16.self)
        p.storeBytes(of: UInt16(3).bigEndian, toByteOffset: 14, as: UInt16.self)
        p.storeBytes(of: sendTimeID << 4 | 7, toByteOffset: 16, as: UInt8.self)
        p.storeBytes(of: UInt64(bitPattern: sendTime).bigEndian, toByteOffset: 17, as: UInt64.self)
        p.storeBytes(of: 0, toByteOffset: 25, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 26, as: UInt16.self)
    }
}
