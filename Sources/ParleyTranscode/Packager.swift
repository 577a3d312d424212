import Foundation
import ParleyMedia

/// Segment container: CMAF fragmented MP4 with an init segment, or MPEG-TS.
public enum SegmentFormat: String, Sendable, Codable {
    case fmp4, ts
    public var segmentExtension: String { self == .fmp4 ? "m4s" : "ts" }
}

/// One written media segment.
public struct Segment: Sendable, Codable {
    public var index: Int
    /// Presentation start and duration in seconds, relative to the source start.
    public var start: Double
    public var duration: Double
    public var bytes: Int
    public var file: String
    /// Byte range of the segment's leading IDR (for the I-frame playlist).
    public var keyframeBytes: Int
    /// Bits per second over the segment.
    public var bitRate: Int { duration > 0 ? Int((Double(bytes) * 8 / duration).rounded()) : 0 }
}

/// Cuts one rendition's encoded packets into segment files. The caller
/// says which packet starts a segment; the packager flushes the muxer there,
/// so every segment begins with that packet (an IDR for video).
final class Packager {
    let format: SegmentFormat
    let dir: URL
    let muxer: Muxer
    let encoderTimeBase: Rational
    private(set) var streamTimeBase: Rational
    private(set) var segments: [Segment] = []
    private(set) var initBytes = 0
    private let isVideo: Bool
    private let frameDuration: Int64

    private var pending: [UInt8] = []
    private var initWritten = false
    private var segmentStartPTS: Int64?
    private var packetsInSegment = 0
    /// pts (encoder time base) where the timeline starts: segment times are relative to it.
    let originPTS: Int64
    /// First packet bytes of the current segment (TS: first PES of the IDR).
    private(set) var firstPacket: [UInt8] = []

    init(format: SegmentFormat, dir: URL, encoder: Encoder, isVideo: Bool, frameDuration: Int64, originPTS: Int64) throws {
        self.format = format
        self.dir = dir
        self.isVideo = isVideo
        self.frameDuration = frameDuration
        self.originPTS = originPTS
        encoderTimeBase = encoder.timeBase
        muxer = try Muxer(format: format == .fmp4 ? "mp4" : "mpegts")
        try muxer.addStream(from: encoder)
        var opts: [String: String] = [:]
        if format == .fmp4 {
            // One fragment per segment, cut only when we say so; moov written
            // once the first fragment's timing (edit list) is known.
            opts["movflags"] = "frag_custom+dash+delay_moov"
        } else {
            opts["mpegts_flags"] = "resend_headers"
        }
        try muxer.writeHeader(options: opts)
        streamTimeBase = muxer.timeBase(ofStream: 0)
        pending += try muxer.takeBytes()
    }

    /// Writes one encoded packet (encoder time base). `startsSegment` closes
    /// the running segment first.
    func write(_ packet: Packet, startsSegment: Bool) throws {
        if startsSegment || segmentStartPTS == nil {
            if segmentStartPTS != nil, packetsInSegment > 0 { try closeSegment(endPTS: packet.pts) }
            // The timeline starts at the origin: audio priming (negative pts) belongs to segment 0.
            segmentStartPTS = segments.isEmpty ? max(packet.pts, originPTS) : packet.pts
            packetsInSegment = 0
            if format == .ts && segments.count > 0 { try muxer.setOption("mpegts_flags", "resend_headers") }
        }
        if isVideo && packet.duration <= 0 { packet.duration = frameDuration }
        packet.streamIndex = 0
        packet.rescaleTimestamps(from: encoderTimeBase, to: streamTimeBase)
        try muxer.write(packet)
        packetsInSegment += 1
    }

    /// Closes the last segment; `endPTS` is where the rendition ends (encoder time base).
    func finish(endPTS: Int64) throws {
        if segmentStartPTS != nil, packetsInSegment > 0 { try closeSegment(endPTS: endPTS, last: true) }
        else { try muxer.writeTrailer() }
    }

    private func seconds(_ pts: Int64) -> Double { Double(pts - originPTS) * encoderTimeBase.double }

    private func closeSegment(endPTS: Int64, last: Bool = false) throws {
        if last { try muxer.writeTrailer() } else { try muxer.flush() }
        pending += try muxer.takeBytes()
        if format == .fmp4, !initWritten, !last, !MP4Boxes.topLevel(pending).contains(where: { $0.type == "moof" }) {
            // With delay_moov the first flush writes only the moov; the
            // second writes the fragment holding the buffered samples.
            try muxer.flush()
            pending += try muxer.takeBytes()
        }
        var body: [UInt8]
        if format == .fmp4 {
            let boxes = MP4Boxes.topLevel(pending)
            if !initWritten {
                // Everything before the first fragment is the init segment (ftyp + moov).
                guard let first = boxes.first(where: { ["styp", "sidx", "moof"].contains($0.type) }) else {
                    throw MediaError("mp4 packager", "muxer produced no fragment")
                }
                let initSeg = Array(pending[0..<first.offset])
                try Data(initSeg).write(to: dir.appendingPathComponent("init.mp4"))
                initBytes = initSeg.count
                initWritten = true
                body = Array(pending[first.offset...])
            } else {
                body = pending
            }
        } else {
            body = pending
        }
        pending.removeAll(keepingCapacity: true)
        let index = segments.count
        let name = String(format: "seg_%05d.%@", index, format.segmentExtension)
        try Data(body).write(to: dir.appendingPathComponent(name))
        let start = segmentStartPTS!
        let keyBytes = isVideo ? (format == .fmp4 ? MP4Boxes.firstSampleEnd(body) : MPEGTS.firstPESEnd(body)) ?? body.count : body.count
        segments.append(Segment(index: index, start: seconds(start), duration: Double(endPTS - start) * encoderTimeBase.double,
                                bytes: body.count, file: name, keyframeBytes: keyBytes))
    }
}

/// Just enough ISO-BMFF parsing to split init and media segments and find
/// the first sample of a fragment.
enum MP4Boxes {
    struct Box { let type: String; let offset: Int; let size: Int; var payload: Int { offset + 8 } }

    static func be32(_ b: [UInt8], _ o: Int) -> Int {
        Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
    }

    /// Boxes between `start` and `end` (top level when the whole buffer).
    static func children(_ b: [UInt8], from start: Int, to end: Int) -> [Box] {
        var out: [Box] = []
        var o = start
        while o + 8 <= end {
            var size = be32(b, o)
            let type = String(decoding: b[(o + 4)..<(o + 8)], as: UTF8.self)
            if size == 1, o + 16 <= end {
                size = Int(be32(b, o + 8)) << 32 | be32(b, o + 12)
            } else if size == 0 {
                size = end - o
            }
            guard size >= 8, o + size <= end else { break }
            out.append(Box(type: type, offset: o, size: size))
            o += size
        }
        return out
    }

    static func topLevel(_ b: [UInt8]) -> [Box] { children(b, from: 0, to: b.count) }

    /// Offset just past the first sample of the first `moof` fragment:
    /// moof start + trun data_offset + first sample size.
    static func firstSampleEnd(_ b: [UInt8]) -> Int? {
        guard let moof = topLevel(b).first(where: { $0.type == "moof" }) else { return nil }
        guard let traf = children(b, from: moof.payload, to: moof.offset + moof.size).first(where: { $0.type == "traf" }) else { return nil }
        let kids = children(b, from: traf.payload, to: traf.offset + traf.size)
        var defaultSize: Int?
        if let tfhd = kids.first(where: { $0.type == "tfhd" }) {
            let flags = be32(b, tfhd.payload) & 0xFFFFFF
            var o = tfhd.payload + 8  // version/flags + track_ID
            if flags & 0x1 != 0 { o += 8 }
            if flags & 0x2 != 0 { o += 4 }
            if flags & 0x8 != 0 { o += 4 }
            if flags & 0x10 != 0 { defaultSize = be32(b, o) }
        }
        guard let trun = kids.first(where: { $0.type == "trun" }) else { return nil }
        let flags = be32(b, trun.payload) & 0xFFFFFF
        var o = trun.payload + 8  // version/flags + sample_count
        var dataOffset = 0
        if flags & 0x1 != 0 { dataOffset = Int(Int32(bitPattern: UInt32(be32(b, o)))); o += 4 }
        if flags & 0x4 != 0 { o += 4 }
        if flags & 0x100 != 0 { o += 4 }
        var size = defaultSize
        if flags & 0x200 != 0 { size = be32(b, o) }
        guard let s = size, dataOffset > 0 else { return nil }
        return min(b.count, moof.offset + dataOffset + s)
    }
}

/// Just enough MPEG-TS parsing to find where the first video frame's PES ends.
enum MPEGTS {
    /// Offset of the second PES start on the first PES-carrying elementary
    /// stream (so [0, result) holds PAT, PMT and the whole first frame).
    static func firstPESEnd(_ b: [UInt8]) -> Int? {
        var pid: Int?
        var o = 0
        while o + 188 <= b.count {
            guard b[o] == 0x47 else { return nil }
            let pusi = b[o + 1] & 0x40 != 0
            let p = Int(b[o + 1] & 0x1F) << 8 | Int(b[o + 2])
            if pusi && p != 0 && p != 0x1FFF {
                // A PES starts with 00 00 01 after the adaptation field.
                let afc = (b[o + 3] >> 4) & 0x3
                var payload = o + 4
                if afc == 2 || afc == 3 { payload += 1 + Int(b[o + 4]) }
                let isPES = payload + 3 <= o + 188 && b[payload] == 0 && b[payload + 1] == 0 && b[payload + 2] == 1
                if isPES {
                    if let v = pid { if p == v { return o } } else { pid = p }
                }
            }
            o += 188
        }
        return nil
    }
}
