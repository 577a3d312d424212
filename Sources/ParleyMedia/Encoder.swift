import CFFmpeg

/// A libavcodec encoder; frees its context in `deinit`.
public final class Encoder: @unchecked Sendable {
    public private(set) var context: UnsafeMutablePointer<AVCodecContext>?
    public let codecName: String

    /// Settings for a video encoder.
    public struct Video: Sendable {
        public var codec = "libx264"
        public var width: Int
        public var height: Int
        public var pixelFormat: AVPixelFormat = AV_PIX_FMT_YUV420P
        public var timeBase: Rational
        public var frameRate: Rational
        /// Average bitrate in bit/s (0: quality-based).
        public var bitRate: Int = 0
        public var maxRate: Int = 0
        public var bufferSize: Int = 0
        /// Frames between keyframes (0: encoder default).
        public var gopSize: Int = 0
        /// Private options of the codec (`preset`, `profile`, `x264-params`, ...).
        public var options: [String: String] = [:]
        /// Encoder threads, 0 = libav's choice.
        public var threads: Int = 0
        /// Put SPS/PPS in extradata (MP4 needs it; MPEG-TS repeats them in-band).
        public var globalHeader = true
        /// Colour description written into the stream (the VUI for H.264).
        public var color = ColorDescription()
        /// Fixed quantiser for MJPEG thumbnails (`qscale`), 0 = unset.
        public var qscale: Int = 0
        public init(width: Int, height: Int, timeBase: Rational, frameRate: Rational) {
            self.width = width; self.height = height; self.timeBase = timeBase; self.frameRate = frameRate
        }
    }

    /// Settings for an audio encoder.
    public struct Audio: Sendable {
        public var codec = "aac"
        public var sampleRate = 48000
        public var channels = 2
        public var bitRate = 128_000
        public var globalHeader = true
        public init() {}
    }

    public init(video v: Video) throws {
        codecName = v.codec
        let (codec, c) = try Encoder.allocate(v.codec)
        context = c
        c.pointee.width = Int32(v.width)
        c.pointee.height = Int32(v.height)
        c.pointee.pix_fmt = v.pixelFormat
        c.pointee.time_base = v.timeBase.av
        c.pointee.framerate = v.frameRate.av
        c.pointee.sample_aspect_ratio = AVRational(num: 1, den: 1)
        c.pointee.color_primaries = v.color.primaries
        c.pointee.color_trc = v.color.transfer
        c.pointee.colorspace = v.color.matrix
        c.pointee.color_range = v.color.range
        if v.bitRate > 0 { c.pointee.bit_rate = Int64(v.bitRate) }
        if v.maxRate > 0 { c.pointee.rc_max_rate = Int64(v.maxRate) }
        if v.bufferSize > 0 { c.pointee.rc_buffer_size = Int32(v.bufferSize) }
        if v.gopSize > 0 { c.pointee.gop_size = Int32(v.gopSize); c.pointee.keyint_min = Int32(v.gopSize) }
        if v.qscale > 0 {
            c.pointee.flags |= AV_CODEC_FLAG_QSCALE
            c.pointee.global_quality = Int32(v.qscale) * FF_QP2LAMBDA
        }
        c.pointee.thread_count = Int32(v.threads)
        if v.globalHeader { c.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER }
        try open(codec, options: v.options)
    }

    public init(audio a: Audio) throws {
        codecName = a.codec
        let (codec, c) = try Encoder.allocate(a.codec)
        context = c
        c.pointee.sample_rate = Int32(a.sampleRate)
        c.pointee.sample_fmt = AV_SAMPLE_FMT_FLTP
        av_channel_layout_default(&c.pointee.ch_layout, Int32(a.channels))
        c.pointee.bit_rate = Int64(a.bitRate)
        c.pointee.time_base = AVRational(num: 1, den: Int32(a.sampleRate))
        c.pointee.profile = FF_PROFILE_AAC_LOW
        if a.globalHeader { c.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER }
        try open(codec, options: [:])
    }

    private static func allocate(_ name: String) throws -> (UnsafePointer<AVCodec>, UnsafeMutablePointer<AVCodecContext>) {
        guard let codec = avcodec_find_encoder_by_name(name) else {
            throw MediaError("avcodec_find_encoder_by_name", "no encoder \(name)")
        }
        guard let c = avcodec_alloc_context3(codec) else { throw MediaError("avcodec_alloc_context3", "out of memory") }
        return (codec, c)
    }

    private func open(_ codec: UnsafePointer<AVCodec>, options: [String: String]) throws {
        var dict: OpaquePointer?
        for (k, v) in options { av_dict_set(&dict, k, v, 0) }
        let ret = avcodec_open2(context, codec, &dict)
        av_dict_free(&dict)
        if ret < 0 {
            avcodec_free_context(&context)
            throw MediaError(code: ret, function: "avcodec_open2(\(codecName))")
        }
    }

    deinit { avcodec_free_context(&context) }

    public var timeBase: Rational { Rational(context!.pointee.time_base) }
    /// Samples per audio frame the encoder wants (0 for video).
    public var frameSize: Int { Int(context!.pointee.frame_size) }
    public var sampleRate: Int { Int(context!.pointee.sample_rate) }
    public var sampleFormat: AVSampleFormat { context!.pointee.sample_fmt }
    public var channelLayout: AVChannelLayout { context!.pointee.ch_layout }
    /// Codec extradata (SPS/PPS, AudioSpecificConfig).
    public var extradata: [UInt8] {
        guard let d = context!.pointee.extradata, context!.pointee.extradata_size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: d, count: Int(context!.pointee.extradata_size)))
    }
    public var profile: Int32 { context!.pointee.profile }
    public var level: Int32 { context!.pointee.level }

    /// Sends a frame (nil = flush). False when output must be received first.
    public func send(_ frame: Frame?) throws -> Bool {
        let ret = avcodec_send_frame(context, frame?.pointer)
        if ret == parley_averror_eagain() { return false }
        if ret == parley_averror_eof() { return true }
        try check(ret, "avcodec_send_frame(\(codecName))")
        return true
    }

    /// Receives the next encoded packet; false when more input is needed or
    /// the encoder is drained.
    public func receive(into packet: Packet) throws -> Bool {
        let ret = avcodec_receive_packet(context, packet.pointer)
        if ret == parley_averror_eagain() || ret == parley_averror_eof() { return false }
        try check(ret, "avcodec_receive_packet(\(codecName))")
        return true
    }
}
