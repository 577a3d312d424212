import CFFmpeg

/// An `AVFrame` owned by Swift; freed in `deinit`. Frames pass between
/// threads by reference counting (`clone`), never by copying pixels.
public final class Frame: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<AVFrame>

    public init() {
        guard let f = av_frame_alloc() else { fatalError("av_frame_alloc: out of memory") }
        pointer = f
    }

    /// A video frame with its own buffers.
    public convenience init(width: Int, height: Int, pixelFormat: AVPixelFormat) throws {
        self.init()
        pointer.pointee.width = Int32(width)
        pointer.pointee.height = Int32(height)
        pointer.pointee.format = pixelFormat.rawValue
        try check(av_frame_get_buffer(pointer, 0), "av_frame_get_buffer")
    }

    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = pointer
        av_frame_free(&f)
    }

    public var width: Int { Int(pointer.pointee.width) }
    public var height: Int { Int(pointer.pointee.height) }
    public var pixelFormat: AVPixelFormat { AVPixelFormat(rawValue: pointer.pointee.format) }
    public var sampleFormat: AVSampleFormat { AVSampleFormat(rawValue: pointer.pointee.format) }
    public var sampleCount: Int { Int(pointer.pointee.nb_samples) }
    public var sampleRate: Int { Int(pointer.pointee.sample_rate) }
    public var pts: Int64 {
        get { pointer.pointee.pts }
        set { pointer.pointee.pts = newValue }
    }
    /// The decoder's best guess at the presentation time (pts, else dts).
    public var bestEffortTimestamp: Int64 { pointer.pointee.best_effort_timestamp }
    /// The frame's colour description (from the bitstream or the container).
    public var color: ColorDescription {
        get {
            let f = pointer.pointee
            return ColorDescription(primaries: f.color_primaries, transfer: f.color_trc, matrix: f.colorspace, range: f.color_range)
        }
        set {
            pointer.pointee.color_primaries = newValue.primaries
            pointer.pointee.color_trc = newValue.transfer
            pointer.pointee.colorspace = newValue.matrix
            pointer.pointee.color_range = newValue.range
        }
    }
    /// Asks the encoder for an intra frame (an IDR with closed GOPs).
    public var forceKeyframe: Bool {
        get { pointer.pointee.pict_type == AV_PICTURE_TYPE_I }
        set { pointer.pointee.pict_type = newValue ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE }
    }

    public func unref() { av_frame_unref(pointer) }

    /// A new reference to the same buffers (no pixel copy).
    public func clone() -> Frame {
        let f = Frame()
        av_frame_ref(f.pointer, pointer)
        return f
    }
}
