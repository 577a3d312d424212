import CFFmpeg

/// An `AVPacket` owned by Swift; freed in `deinit`.
public final class Packet: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<AVPacket>

    public init() {
        guard let p = av_packet_alloc() else { fatalError("av_packet_alloc: out of memory") }
        pointer = p
    }

    /// A packet holding a copy of `data` (padded as decoders need).
    public convenience init(copying data: [UInt8], pts: Int64 = Packet.noPTS) throws {
        self.init()
        try check(av_new_packet(pointer, Int32(data.count)), "av_new_packet")
        data.withUnsafeBufferPointer { if let b = $0.baseAddress { pointer.pointee.data.update(from: b, count: data.count) } }
        pointer.pointee.pts = pts
        pointer.pointee.dts = pts
    }

    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = pointer
        av_packet_free(&p)
    }

    public var streamIndex: Int {
        get { Int(pointer.pointee.stream_index) }
        set { pointer.pointee.stream_index = Int32(newValue) }
    }
    public var pts: Int64 {
        get { pointer.pointee.pts }
        set { pointer.pointee.pts = newValue }
    }
    public var dts: Int64 {
        get { pointer.pointee.dts }
        set { pointer.pointee.dts = newValue }
    }
    public var duration: Int64 {
        get { pointer.pointee.duration }
        set { pointer.pointee.duration = newValue }
    }
    public var size: Int { Int(pointer.pointee.size) }
    public var isKeyframe: Bool { pointer.pointee.flags & AV_PKT_FLAG_KEY != 0 }
    public var data: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: pointer.pointee.data, count: Int(pointer.pointee.size))
    }

    /// Drops the payload (keeps the packet object for reuse).
    public func unref() { av_packet_unref(pointer) }

    /// A new reference to the same payload.
    public func clone() -> Packet {
        let p = Packet()
        av_packet_ref(p.pointer, pointer)
        return p
    }

    /// Rescales pts, dts and duration between time bases.
    public func rescaleTimestamps(from: Rational, to: Rational) {
        av_packet_rescale_ts(pointer, from.av, to.av)
    }

    /// "No timestamp" in libav.
    public static var noPTS: Int64 { parley_av_nopts_value() }
}
