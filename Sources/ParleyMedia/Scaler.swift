import CFFmpeg

/// A libswscale context converting frames of one size/format to another;
/// frees it in `deinit`.
public final class Scaler: @unchecked Sendable {
    private var context: OpaquePointer?
    public let outWidth: Int
    public let outHeight: Int
    public let outFormat: AVPixelFormat

    /// `flags` defaults to bicubic, like ffmpeg's `scale` filter.
    public init(inWidth: Int, inHeight: Int, inFormat: AVPixelFormat,
                outWidth: Int, outHeight: Int, outFormat: AVPixelFormat,
                flags: Int32 = SWS_BICUBIC) throws {
        self.outWidth = outWidth
        self.outHeight = outHeight
        self.outFormat = outFormat
        context = sws_getContext(Int32(inWidth), Int32(inHeight), inFormat,
                                 Int32(outWidth), Int32(outHeight), outFormat,
                                 flags, nil, nil, nil)
        guard context != nil else {
            throw MediaError("sws_getContext", "cannot scale \(inWidth)x\(inHeight) to \(outWidth)x\(outHeight)")
        }
    }

    /// The output frame `scaleReusingOutput` writes into.
    private var reusable: Frame?

    deinit { sws_freeContext(context) }

    /// Scales into one frame kept by the scaler, so a steady pipeline does not
    /// allocate (and page-fault in) a picture per frame. Encoders copy or
    /// release their input once its packets have been received; if anyone
    /// still holds the buffer, `av_frame_make_writable` gives it a fresh one.
    public func scaleReusingOutput(_ input: Frame) throws -> Frame {
        let out: Frame
        if let r = reusable {
            try check(av_frame_make_writable(r.pointer), "av_frame_make_writable")
            out = r
        } else {
            out = try Frame(width: outWidth, height: outHeight, pixelFormat: outFormat)
            reusable = out
        }
        try check(sws_scale_frame(context, out.pointer, input.pointer), "sws_scale_frame")
        out.pts = input.pts
        return out
    }

    /// Scales `input` into a new frame with its own buffers; copies pts.
    public func scale(_ input: Frame) throws -> Frame {
        let out = Frame()
        out.pointer.pointee.width = Int32(outWidth)
        out.pointer.pointee.height = Int32(outHeight)
        out.pointer.pointee.format = outFormat.rawValue
        let ret = sws_scale_frame(context, out.pointer, input.pointer)
        try check(ret, "sws_scale")
        out.pts = input.pts
        return out
    }
}
