/// Whether an RTP payload starts a keyframe, for the codecs a relay can
/// switch simulcast layers on (it may switch a subscriber only there).
public enum Keyframe {
    /// `codecKey` as `TrackDescription.codecKey`; false for codecs it cannot read (AV1, audio).
    public static func starts(codecKey: String, payload p: UnsafeRawBufferPointer) -> Bool {
        if codecKey == "vp8" { return vp8(p) }
        if codecKey.hasPrefix("vp9") { return vp9(p) }
        if codecKey.hasPrefix("h264") { return h264(p) }
        return false
    }

    /// RFC 7741 §4.2-4.3: the first packet of a partition 0 (S = 1, PID = 0)
    /// whose VP8 payload header has P = 0 (a key frame).
    static func vp8(_ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= 1, p[0] & 0x10 != 0, p[0] & 0x07 == 0 else { return false }
        var off = 1
        if p[0] & 0x80 != 0 { // X: extension byte I L T K
            guard p.count > off else { return false }
            let x = p[off]
            off += 1
            if x & 0x80 != 0 { // I: picture id, 7 or 15 bits
                guard p.count > off else { return false }
                off += p[off] & 0x80 != 0 ? 2 : 1
            }
            if x & 0x40 != 0 { off += 1 }              // L: TL0PICIDX
            if x & 0x30 != 0 { off += 1 }              // T or K: TID/Y/KEYIDX
        }
        guard p.count > off else { return false }
        return p[off] & 0x01 == 0
    }

    /// RFC 9628 §4.2: the first packet of a frame (B = 1) that is not
    /// inter-picture predicted (P = 0).
    static func vp9(_ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= 1 else { return false }
        return p[0] & 0x40 == 0 && p[0] & 0x08 != 0
    }

    /// RFC 6184 §5.6-5.8 (packetization-mode 1): an IDR slice or an SPS, alone,
    /// in a STAP-A, or at the start of an FU-A.
    static func h264(_ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= 2 else { return false }
        func key(_ type: UInt8) -> Bool { type == 5 || type == 7 }
        switch p[0] & 0x1F {
        case 24: // STAP-A: 16-bit sizes and NAL units
            var off = 1
            while off + 3 <= p.count {
                let n = Int(p[off]) << 8 | Int(p[off + 1])
                if n > 0, key(p[off + 2] & 0x1F) { return true }
                off += 2 + n
            }
            return false
        case 28: // FU-A: start bit and the fragmented unit's type
            return p[1] & 0x80 != 0 && key(p[1] & 0x1F)
        case let t:
            return key(t)
        }
    }
}
