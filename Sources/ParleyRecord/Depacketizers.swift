/// One coded frame rebuilt from RTP: an Opus packet, a VP8 frame, an H.264
/// access unit in Annex B.
public struct MediaFrame: Sendable, Equatable {
    /// Extended RTP timestamp.
    public var timestamp: Int64
    public var data: [UInt8]
    public var isKeyframe: Bool
    /// Arrival time of the frame's first packet (ns since the epoch).
    public var arrivalNanos: Int64
}

/// Rebuilds frames from one track's packets in sequence order (what a
/// `JitterBuffer` releases). Loss never yields a broken frame: a frame that
/// lost a packet is dropped, and video then waits for the next keyframe.
public protocol Depacketizer {
    mutating func push(_ item: JitterOutput) -> MediaFrame?
}

import ParleyRTP

extension TrackDescription {
    /// The depacketizer for this track's codec, nil for one Parley cannot export.
    public func makeDepacketizer() -> (any Depacketizer)? {
        switch codec.lowercased() {
        case "opus": return OpusDepacketizer()
        case "vp8": return VP8Depacketizer()
        case "h264": return H264Depacketizer()
        default: return nil
        }
    }
}

/// RFC 7587 §4.2: the RTP payload is exactly one Opus packet.
public struct OpusDepacketizer: Depacketizer {
    public init() {}
    public mutating func push(_ item: JitterOutput) -> MediaFrame? {
        guard case .packet(let p) = item, !p.payload.isEmpty else { return nil }
        return MediaFrame(timestamp: p.timestamp, data: p.payload, isKeyframe: true, arrivalNanos: p.arrivalNanos)
    }
}

/// A video frame being put together from packets sharing one timestamp,
/// ending at the marker bit; shared by the VP8 and H.264 depacketizers.
struct FrameAssembly {
    var timestamp: Int64?
    var data: [UInt8] = []
    var broken = false
    var arrival: Int64 = 0
    /// After a loss, frames are dropped until a keyframe.
    var needKeyframe = true

    mutating func lose() {
        broken = true
        needKeyframe = true
    }

    /// Starts a frame if `p` opens a new timestamp; a frame left unfinished is dropped.
    mutating func begin(_ p: OrderedPacket) {
        if timestamp != p.timestamp {
            timestamp = p.timestamp
            data.removeAll(keepingCapacity: true)
            broken = false
            arrival = p.arrivalNanos
        }
    }

    /// At the marker bit: the frame, if whole and decodable.
    mutating func end(keyframe: Bool) -> MediaFrame? {
        defer { timestamp = nil; data = []; broken = false }
        guard !broken, !data.isEmpty, let ts = timestamp else { return nil }
        if keyframe { needKeyframe = false } else if needKeyframe { return nil }
        return MediaFrame(timestamp: ts, data: data, isKeyframe: keyframe, arrivalNanos: arrival)
    }
}

// VP8 payload descriptor, RFC 7741 §4.2:
//
//      0 1 2 3 4 5 6 7
//     +-+-+-+-+-+-+-+-+
//     |X|R|N|S|R| PID | (REQUIRED)
//     +-+-+-+-+-+-+-+-+
// X:  |I|L|T|K| RSV   | (OPTIONAL)
// I:  |M| PictureID   | (OPTIONAL, M=1: 15 bits over two bytes)
// L:  |   TL0PICIDX   | (OPTIONAL)
// T/K:|TID|Y| KEYIDX  | (OPTIONAL)
//
// The first byte of a frame's first partition (S=1, PID=0) is the VP8
// frame tag (RFC 6386 §9.1); its bit 0 is 0 for a keyframe.

/// RFC 7741 VP8 depacketizer.
public struct VP8Depacketizer: Depacketizer {
    private var frame = FrameAssembly()
    private var keyframe = false
    public init() {}

    /// Where the VP8 payload starts after the descriptor, and whether the
    /// packet starts partition 0; nil for a descriptor cut short.
    public static func parseDescriptor(_ b: [UInt8]) -> (payloadOffset: Int, startsFrame: Bool)? {
        guard !b.isEmpty else { return nil }
        var o = 1
        let x = b[0] & 0x80 != 0, s = b[0] & 0x10 != 0, pid = b[0] & 0x07
        if x {
            guard b.count > o else { return nil }
            let ext = b[o]; o += 1
            if ext & 0x80 != 0 {  // I: PictureID
                guard b.count > o else { return nil }
                o += b[o] & 0x80 != 0 ? 2 : 1
            }
            if ext & 0x40 != 0 { o += 1 }  // L: TL0PICIDX
            if ext & 0x30 != 0 { o += 1 }  // T or K: TID/Y/KEYIDX
        }
        guard o < b.count else { return nil }
        return (o, s && pid == 0)
    }

    public mutating func push(_ item: JitterOutput) -> MediaFrame? {
        guard case .packet(let p) = item else { frame.lose(); return nil }
        guard let (offset, starts) = Self.parseDescriptor(p.payload) else { frame.lose(); return nil }
        let opening = frame.timestamp != p.timestamp
        frame.begin(p)
        if opening {
            // A frame must begin with the start of partition 0.
            if !starts { frame.broken = true; frame.needKeyframe = true }
            keyframe = starts && p.payload[offset] & 0x01 == 0
        }
        frame.data += p.payload[offset...]
        return p.marker ? frame.end(keyframe: keyframe) : nil
    }
}

// H.264 RTP payload, RFC 6184 §5.6-5.8: the first byte is a NAL unit header
// |F|NRI|Type|. Types 1-23: one NAL unit. 24 (STAP-A): 16-bit sizes, each
// followed by a NAL unit. 28 (FU-A): FU indicator |F|NRI|28|, FU header
// |S|E|R|Type|, then a fragment; the NAL header is rebuilt from both.

/// RFC 6184 H.264 depacketizer (packetization modes 0 and 1) producing
/// Annex B access units; remembers the latest SPS and PPS.
public struct H264Depacketizer: Depacketizer {
    private var frame = FrameAssembly()
    private var keyframe = false
    private var inFragment = false
    public private(set) var sps: [UInt8]?
    public private(set) var pps: [UInt8]?
    static let startCode: [UInt8] = [0, 0, 0, 1]
    public static let stapA: UInt8 = 24
    public static let fuA: UInt8 = 28
    public init() {}

    /// Annex B SPS and PPS (what a container's codec private data is built from).
    public var parameterSets: [UInt8] {
        guard let sps, let pps else { return [] }
        return Self.startCode + sps + Self.startCode + pps
    }

    private mutating func nal(_ n: ArraySlice<UInt8>) {
        guard let h = n.first else { return }
        switch h & 0x1F {
        case 5: keyframe = true
        case 7: sps = Array(n)
        case 8: pps = Array(n)
        default: break
        }
        frame.data += Self.startCode
        frame.data += n
    }

    public mutating func push(_ item: JitterOutput) -> MediaFrame? {
        guard case .packet(let p) = item else { frame.lose(); inFragment = false; return nil }
        if frame.timestamp != p.timestamp { keyframe = false; inFragment = false }
        frame.begin(p)
        let b = p.payload
        guard let first = b.first else { frame.lose(); return nil }
        switch first & 0x1F {
        case 1...23:
            nal(b[...])
        case Self.stapA:
            var o = 1
            while o + 2 <= b.count {
                let size = Int(b[o]) << 8 | Int(b[o + 1])
                o += 2
                guard size > 0, o + size <= b.count else { frame.lose(); break }
                nal(b[o..<(o + size)])
                o += size
            }
        case Self.fuA:
            guard b.count > 2 else { frame.lose(); break }
            let start = b[1] & 0x80 != 0, end = b[1] & 0x40 != 0, type = b[1] & 0x1F
            if start {
                if type == 5 { keyframe = true }
                frame.data += Self.startCode
                frame.data.append(first & 0xE0 | type)
                inFragment = true
            } else if !inFragment {
                frame.lose()  // a fragment whose start was lost
                break
            }
            frame.data += b[2...]
            if end { inFragment = false }
        default:
            frame.lose()  // STAP-B, MTAP, FU-B: interleaved mode, not used by WebRTC
        }
        return p.marker ? frame.end(keyframe: keyframe) : nil
    }
}
