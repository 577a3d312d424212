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

    /// Scales `input` into the rectangle of `canvas` (a planar 4:2:0 frame,
    /// writable) whose top left corner is (`x`, `y`), both even; the
    /// rectangle is this scaler's output size and must lie inside the canvas.
    public func scale(_ input: Frame, into canvas: Frame, x: Int, y: Int) throws {
        precondition(x % 2 == 0 && y % 2 == 0 && x + outWidth <= canvas.width && y + outHeight <= canvas.height, "tile outside the canvas")
        let c = canvas.pointer.pointee
        let l = [Int(c.linesize.0), Int(c.linesize.1), Int(c.linesize.2)]
        var dst: [UnsafeMutablePointer<UInt8>?] = [c.data.0! + y * l[0] + x, c.data.1! + y / 2 * l[1] + x / 2,
                                                   c.data.2! + y / 2 * l[2] + x / 2, nil]
        var dstStride: [Int32] = l.map(Int32.init) + [0]
        let i = input.pointer.pointee
        let src: [UnsafePointer<UInt8>?] = [i.data.0, i.data.1, i.data.2, i.data.3].map { $0.map { UnsafePointer($0) } }
        let srcStride: [Int32] = [i.linesize.0, i.linesize.1, i.linesize.2, i.linesize.3]
        let ret = sws_scale(context, src, srcStride, 0, i.height, &dst, &dstStride)
        guard ret > 0 else { throw MediaError("sws_scale", "scaled no lines") }
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
