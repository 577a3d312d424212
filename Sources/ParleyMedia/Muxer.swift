import CFFmpeg

/// A libavformat muxer writing into memory (a dynamic AVIO buffer), so the
/// caller decides where each byte range goes: an init segment, media
/// segments, a file; or straight into one file. Frees the context and
/// buffer (or closes the file) in `deinit`.
public final class Muxer: @unchecked Sendable {
    public private(set) var context: UnsafeMutablePointer<AVFormatContext>?
    public let formatName: String
    private var headerWritten = false
    private var trailerWritten = false
    private let writesFile: Bool

    /// - Parameter format: a libavformat muxer name (`mp4`, `mpegts`, ...).
    public init(format: String) throws {
        formatName = format
        writesFile = false
        var ctx: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&ctx, nil, format, nil), "avformat_alloc_output_context2(\(format))")
        context = ctx
        try openBuffer()
    }

    /// A muxer writing the file at `path` (created or truncated); `takeBytes`
    /// returns nothing for it.
    public init(format: String, path: String) throws {
        formatName = format
        writesFile = true
        var ctx: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&ctx, nil, format, nil), "avformat_alloc_output_context2(\(format))")
        context = ctx
        var pb: UnsafeMutablePointer<AVIOContext>?
        let ret = avio_open(&pb, path, AVIO_FLAG_WRITE)
        if ret < 0 {
            avformat_free_context(ctx)
            context = nil
            throw MediaError(code: ret, function: "avio_open(\(path))")
        }
        ctx!.pointee.pb = pb
    }

    deinit {
        if let c = context {
            if writesFile {
                avio_closep(&c.pointee.pb)
            } else if c.pointee.pb != nil {
                var data: UnsafeMutablePointer<UInt8>?
                _ = avio_close_dyn_buf(c.pointee.pb, &data)
                av_free(data)
                c.pointee.pb = nil
            }
            avformat_free_context(c)
        }
    }

    private func openBuffer() throws {
        var pb: UnsafeMutablePointer<AVIOContext>?
        try check(avio_open_dyn_buf(&pb), "avio_open_dyn_buf")
        context!.pointee.pb = pb
    }

    /// Adds a stream carrying what `encoder` produces; returns its index.
    @discardableResult
    public func addStream(from encoder: Encoder) throws -> Int {
        guard let st = avformat_new_stream(context, nil) else { throw MediaError("avformat_new_stream", "out of memory") }
        try check(avcodec_parameters_from_context(st.pointee.codecpar, encoder.context), "avcodec_parameters_from_context")
        st.pointee.time_base = encoder.context!.pointee.time_base
        st.pointee.avg_frame_rate = encoder.context!.pointee.framerate
        return Int(st.pointee.index)
    }

    /// Adds a stream whose packets come from elsewhere (an RTP
    /// depacketizer, libopus); returns its index.
    @discardableResult
    public func addStream(_ p: StreamParameters) throws -> Int {
        guard let codec = avcodec_find_decoder_by_name(p.codec) else { throw MediaError("avcodec_find_decoder_by_name", "no codec \(p.codec)") }
        guard let st = avformat_new_stream(context, nil) else { throw MediaError("avformat_new_stream", "out of memory") }
        let par = st.pointee.codecpar!
        par.pointee.codec_id = codec.pointee.id
        par.pointee.codec_type = codec.pointee.type
        if codec.pointee.type == AVMEDIA_TYPE_VIDEO {
            par.pointee.width = Int32(p.width)
            par.pointee.height = Int32(p.height)
        } else {
            par.pointee.sample_rate = Int32(p.sampleRate)
            av_channel_layout_default(&par.pointee.ch_layout, Int32(p.channels))
        }
        if !p.extradata.isEmpty {
            let size = p.extradata.count
            guard let d = av_mallocz(size + Int(AV_INPUT_BUFFER_PADDING_SIZE))?.assumingMemoryBound(to: UInt8.self) else {
                throw MediaError("av_mallocz", "out of memory")
            }
            d.update(from: p.extradata, count: size)
            par.pointee.extradata = d
            par.pointee.extradata_size = Int32(size)
        }
        st.pointee.time_base = p.timeBase.av
        return Int(st.pointee.index)
    }

    /// Adds a stream carrying the packets of `demuxer`'s stream `index`
    /// unchanged (a stream copy); returns its index.
    @discardableResult
    public func addStream(copying demuxer: Demuxer, stream index: Int) throws -> Int {
        guard let st = avformat_new_stream(context, nil) else { throw MediaError("avformat_new_stream", "out of memory") }
        try check(avcodec_parameters_copy(st.pointee.codecpar, demuxer.codecParameters(index)), "avcodec_parameters_copy")
        st.pointee.codecpar.pointee.codec_tag = 0
        st.pointee.time_base = demuxer.streams[index].timeBase.av
        return Int(st.pointee.index)
    }

    /// Writes `packet` (its reference is taken) on stream `stream`, its
    /// timestamps in `timeBase`, through libavformat's interleaving.
    public func writeInterleaved(_ packet: Packet, stream: Int, timeBase: Rational) throws {
        packet.streamIndex = stream
        packet.rescaleTimestamps(from: timeBase, to: self.timeBase(ofStream: stream))
        try check(av_interleaved_write_frame(context, packet.pointer), "av_interleaved_write_frame(\(formatName))")
    }

    /// Writes one packet of `data` (copied) on stream `stream`, timestamps in
    /// the stream's time base as given to `addStream` (rescaled here to the
    /// one the muxer chose); `dts` defaults to `pts` (no reordered frames).
    public func write(_ data: [UInt8], stream: Int, pts: Int64, dts: Int64? = nil, duration: Int64 = 0, keyframe: Bool,
                      timeBase: Rational) throws {
        let packet = Packet()
        try check(av_new_packet(packet.pointer, Int32(data.count)), "av_new_packet")
        data.withUnsafeBufferPointer { packet.pointer.pointee.data.update(from: $0.baseAddress!, count: data.count) }
        packet.streamIndex = stream
        packet.pts = pts
        packet.dts = dts ?? pts
        packet.duration = duration
        if keyframe { packet.pointer.pointee.flags |= AV_PKT_FLAG_KEY }
        packet.rescaleTimestamps(from: timeBase, to: self.timeBase(ofStream: stream))
        try check(av_interleaved_write_frame(context, packet.pointer), "av_interleaved_write_frame(\(formatName))")
    }

    /// The stream's time base as the muxer chose it (valid after the header).
    public func timeBase(ofStream i: Int) -> Rational { Rational(context!.pointee.streams[i]!.pointee.time_base) }

    /// Writes the header with muxer options (e.g. `movflags`).
    public func writeHeader(options: [String: String] = [:]) throws {
        var dict: OpaquePointer?
        for (k, v) in options { av_dict_set(&dict, k, v, 0) }
        let ret = avformat_write_header(context, &dict)
        av_dict_free(&dict)
        try check(ret, "avformat_write_header(\(formatName))")
        headerWritten = true
    }

    /// Writes one packet, already in the stream's time base.
    public func write(_ packet: Packet) throws {
        try check(av_write_frame(context, packet.pointer), "av_write_frame(\(formatName))")
    }

    /// Asks the muxer to flush what it buffers (for fragmented MP4 with
    /// `frag_custom`, this closes the current fragment; for MPEG-TS, it
    /// writes out buffered PES data).
    public func flush() throws {
        try check(av_write_frame(context, nil), "av_write_frame(flush)")
        avio_flush(context!.pointee.pb)
    }

    /// Sets a private option of the muxer between packets (`mpegts_flags` ...).
    public func setOption(_ name: String, _ value: String) throws {
        try check(av_opt_set(context!.pointee.priv_data, name, value, 0), "av_opt_set(\(name))")
    }

    /// Returns every byte written since the last call and starts a new buffer.
    public func takeBytes() throws -> [UInt8] {
        guard let pb = context!.pointee.pb else { return [] }
        avio_flush(pb)
        var data: UnsafeMutablePointer<UInt8>?
        let n = avio_close_dyn_buf(pb, &data)
        context!.pointee.pb = nil
        defer { av_free(data) }
        let bytes = n > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: Int(n))) : []
        try openBuffer()
        return bytes
    }

    /// Writes the trailer (flushes the last fragment).
    public func writeTrailer() throws {
        guard headerWritten, !trailerWritten else { return }
        trailerWritten = true
        try check(av_write_trailer(context), "av_write_trailer(\(formatName))")
    }
}

/// What a muxer needs to know about a stream it did not encode itself.
public struct StreamParameters: Sendable {
    /// A libavcodec codec name (`opus`, `vp8`, `h264`).
    public var codec: String
    public var timeBase: Rational
    public var width = 0
    public var height = 0
    public var sampleRate = 0
    public var channels = 0
    /// Codec private data (Annex B SPS/PPS for H.264, `OpusHead` for Opus).
    public var extradata: [UInt8] = []
    public init(codec: String, timeBase: Rational) { self.codec = codec; self.timeBase = timeBase }
}

/// libavcodec's bitstream parsers, for what a frame's own header says.
public enum BitstreamProbe {
    /// The picture size a video frame declares (a VP8 keyframe's header, an
    /// H.264 access unit's SPS), or nil when this frame does not say.
    public static func videoSize(codec: String, frame: [UInt8]) -> (width: Int, height: Int)? {
        guard let c = avcodec_find_decoder_by_name(codec), let parser = av_parser_init(Int32(c.pointee.id.rawValue)) else { return nil }
        defer { av_parser_close(parser) }
        var ctx = avcodec_alloc_context3(c)
        defer { avcodec_free_context(&ctx) }
        // The parser reads up to AV_INPUT_BUFFER_PADDING_SIZE bytes past the end.
        var input = frame + [UInt8](repeating: 0, count: Int(AV_INPUT_BUFFER_PADDING_SIZE))
        var out: UnsafeMutablePointer<UInt8>?
        var outSize: Int32 = 0
        input.withUnsafeMutableBufferPointer { b in
            var data = b.baseAddress!
            var left = Int32(frame.count)
            // Feed the frame, then flush (size 0) so a parser that waits for the next start code emits it.
            for _ in 0..<4 {
                let used = av_parser_parse2(parser, ctx, &out, &outSize, data, left, Packet.noPTS, Packet.noPTS, 0)
                if used < 0 { return }
                data += Int(used); left -= used
                if left == 0 { _ = av_parser_parse2(parser, ctx, &out, &outSize, nil, 0, Packet.noPTS, Packet.noPTS, 0); return }
            }
        }
        let w = Int(parser.pointee.width), h = Int(parser.pointee.height)
        if w > 0 && h > 0 { return (w, h) }
        if let ctx, ctx.pointee.width > 0 { return (Int(ctx.pointee.width), Int(ctx.pointee.height)) }
        return nil
    }
}
