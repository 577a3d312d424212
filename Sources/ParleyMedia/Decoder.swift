import CFFmpeg

/// A libavcodec decoder for one demuxed stream; frees its context in `deinit`.
public final class Decoder: @unchecked Sendable {
    public private(set) var context: UnsafeMutablePointer<AVCodecContext>?
    public let stream: StreamInfo

    /// - Parameter threads: decoder threads, 0 = libav's choice.
    public init(demuxer: Demuxer, stream: StreamInfo, threads: Int = 0) throws {
        self.stream = stream
        guard let codec = avcodec_find_decoder(stream.codecID) else {
            throw MediaError("avcodec_find_decoder", "no decoder for codec \(stream.codecName)")
        }
        var ctx = avcodec_alloc_context3(codec)
        guard ctx != nil else { throw MediaError("avcodec_alloc_context3", "out of memory") }
        context = ctx
        try check(avcodec_parameters_to_context(ctx, demuxer.codecParameters(stream.index)), "avcodec_parameters_to_context")
        ctx!.pointee.pkt_timebase = stream.timeBase.av
        ctx!.pointee.thread_count = Int32(threads)
        let ret = avcodec_open2(ctx, codec, nil)
        if ret < 0 {
            avcodec_free_context(&ctx)
            context = nil
            throw MediaError(code: ret, function: "avcodec_open2(\(stream.codecName))")
        }
    }

    deinit { avcodec_free_context(&context) }

    public var pixelFormat: AVPixelFormat { context!.pointee.pix_fmt }
    public var width: Int { Int(context!.pointee.width) }
    public var height: Int { Int(context!.pointee.height) }
    public var sampleFormat: AVSampleFormat { context!.pointee.sample_fmt }
    public var sampleRate: Int { Int(context!.pointee.sample_rate) }
    public var channelLayout: AVChannelLayout { context!.pointee.ch_layout }

    /// Sends a packet (nil = drain). Returns false when the decoder is full
    /// and frames must be received first.
    public func send(_ packet: Packet?) throws -> Bool {
        let ret = avcodec_send_packet(context, packet?.pointer)
        if ret == parley_averror_eagain() { return false }
        if ret == parley_averror_eof() { return true }
        try check(ret, "avcodec_send_packet(\(stream.codecName))")
        return true
    }

    /// Receives the next decoded frame into `frame`; false when more input is
    /// needed or the decoder is drained.
    public func receive(into frame: Frame) throws -> Bool {
        let ret = avcodec_receive_frame(context, frame.pointer)
        if ret == parley_averror_eagain() || ret == parley_averror_eof() { return false }
        try check(ret, "avcodec_receive_frame(\(stream.codecName))")
        return true
    }
}
