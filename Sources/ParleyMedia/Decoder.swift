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
        let ctx = avcodec_alloc_context3(codec)
        guard ctx != nil else { throw MediaError("avcodec_alloc_context3", "out of memory") }
        context = ctx
        try check(avcodec_parameters_to_context(ctx, demuxer.codecParameters(stream.index)), "avcodec_parameters_to_context")
        try open(codec, threads: threads)
    }

    /// A decoder for packets that come from elsewhere than a demuxer (an RTP
    /// depacketizer): `codec` is a libavcodec decoder name (`vp8`, `h264`),
    /// `extradata` its codec private data, if any.
    public init(codec name: String, extradata: [UInt8] = [], threads: Int = 1) throws {
        guard let codec = avcodec_find_decoder_by_name(name) else { throw MediaError("avcodec_find_decoder_by_name", "no decoder \(name)") }
        var ctx = avcodec_alloc_context3(codec)
        guard let c = ctx else { throw MediaError("avcodec_alloc_context3", "out of memory") }
        context = c
        stream = StreamInfo(index: 0, kind: codec.pointee.type == AVMEDIA_TYPE_VIDEO ? .video : .audio, codecID: codec.pointee.id,
                            codecName: name, timeBase: Rational(1, 1_000_000), frameRate: Rational(0, 1), width: 0, height: 0,
                            color: ColorDescription(), rotation: 0, sampleRate: 0, channels: 0, duration: 0, startTime: 0)
        if !extradata.isEmpty {
            guard let d = av_mallocz(extradata.count + Int(AV_INPUT_BUFFER_PADDING_SIZE))?.assumingMemoryBound(to: UInt8.self) else {
                avcodec_free_context(&ctx)
                context = nil
                throw MediaError("av_mallocz", "out of memory")
            }
            d.update(from: extradata, count: extradata.count)
            c.pointee.extradata = d
            c.pointee.extradata_size = Int32(extradata.count)
        }
        try open(codec, threads: threads)
    }

    /// Opens the context with `stream`'s time base and `threads`; on failure
    /// frees it.
    private func open(_ codec: UnsafePointer<AVCodec>, threads: Int) throws {
        context!.pointee.pkt_timebase = stream.timeBase.av
        context!.pointee.thread_count = Int32(threads)
        let ret = avcodec_open2(context, codec, nil)
        if ret < 0 {
            avcodec_free_context(&context)
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
