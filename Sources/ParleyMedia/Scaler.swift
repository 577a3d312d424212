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

    deinit { sws_freeContext(context) }

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
