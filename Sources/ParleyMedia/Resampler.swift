import CFFmpeg

/// libswresample converting decoded audio to the encoder's format, with an
/// `AVAudioFifo` that hands out frames of exactly the encoder's frame size.
public final class Resampler: @unchecked Sendable {
    private var swr: OpaquePointer?
    private var fifo: OpaquePointer?
    public let outRate: Int
    public let outFormat: AVSampleFormat
    private var outLayout: AVChannelLayout
    private let channels: Int32
    /// Samples handed out so far: the pts (in 1/outRate) of the next frame.
    public private(set) var nextPTS: Int64 = 0

    public init(inLayout: AVChannelLayout, inFormat: AVSampleFormat, inRate: Int,
                outLayout: AVChannelLayout, outFormat: AVSampleFormat, outRate: Int) throws {
        self.outRate = outRate
        self.outFormat = outFormat
        self.outLayout = AVChannelLayout()
        var inL = inLayout
        var outL = outLayout
        av_channel_layout_copy(&self.outLayout, &outL)
        channels = outL.nb_channels
        if inL.order == AV_CHANNEL_ORDER_UNSPEC {
            let n = inL.nb_channels
            inL = AVChannelLayout()
            av_channel_layout_default(&inL, n)
        }
        try check(swr_alloc_set_opts2(&swr, &outL, outFormat, Int32(outRate), &inL, inFormat, Int32(inRate), 0, nil),
                  "swr_alloc_set_opts2")
        try check(swr_init(swr), "swr_init")
        fifo = av_audio_fifo_alloc(outFormat, channels, 4096)
        guard fifo != nil else { throw MediaError("av_audio_fifo_alloc", "out of memory") }
    }

    deinit {
        swr_free(&swr)
        if fifo != nil { av_audio_fifo_free(fifo) }
        av_channel_layout_uninit(&outLayout)
    }

    /// Converts `frame` (nil = flush the resampler) into the FIFO.
    public func push(_ frame: Frame?) throws {
        let inCount = Int32(frame?.sampleCount ?? 0)
        let outMax = swr_get_out_samples(swr, inCount)
        guard outMax > 0 else { return }
        var buf: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?
        var linesize: Int32 = 0
        try check(av_samples_alloc_array_and_samples(&buf, &linesize, channels, outMax, outFormat, 0),
                  "av_samples_alloc_array_and_samples")
        defer {
            av_freep(UnsafeMutableRawPointer(buf!))  // the sample data
            av_freep(&buf)                          // the pointer array
        }
        let n: Int32
        if let f = frame {
            n = withUnsafeMutablePointer(to: &f.pointer.pointee.data) { dp in
                dp.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { src in
                    swr_convert(swr, buf, outMax, src, inCount)
                }
            }
        } else {
            n = swr_convert(swr, buf, outMax, nil, 0)
        }
        try check(n, "swr_convert")
        if n > 0 {
            let w = buf!.withMemoryRebound(to: UnsafeMutableRawPointer?.self, capacity: Int(channels)) {
                av_audio_fifo_write(fifo, $0, n)
            }
            try check(w, "av_audio_fifo_write")
        }
    }

    public var buffered: Int { Int(av_audio_fifo_size(fifo)) }

    /// Pops one frame of `count` samples (fewer only when `final`); nil when
    /// not enough samples are buffered.
    public func pop(count: Int, final: Bool = false) throws -> Frame? {
        let avail = buffered
        guard avail >= count || (final && avail > 0) else { return nil }
        let n = min(count, avail)
        let f = Frame()
        f.pointer.pointee.nb_samples = Int32(n)
        f.pointer.pointee.format = outFormat.rawValue
        f.pointer.pointee.sample_rate = Int32(outRate)
        av_channel_layout_copy(&f.pointer.pointee.ch_layout, &outLayout)
        try check(av_frame_get_buffer(f.pointer, 0), "av_frame_get_buffer(audio)")
        let r = withUnsafeMutablePointer(to: &f.pointer.pointee.data) { dp in
            dp.withMemoryRebound(to: UnsafeMutableRawPointer?.self, capacity: 8) {
                av_audio_fifo_read(fifo, $0, Int32(n))
            }
        }
        try check(r, "av_audio_fifo_read")
        f.pts = nextPTS
        nextPTS += Int64(n)
        return f
    }
}
