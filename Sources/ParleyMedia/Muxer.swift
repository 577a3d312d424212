import CFFmpeg

/// A libavformat muxer writing into memory (a dynamic AVIO buffer), so the
/// caller decides where each byte range goes: an init segment, media
/// segments, a file. Frees the context and buffer in `deinit`.
public final class Muxer: @unchecked Sendable {
    public private(set) var context: UnsafeMutablePointer<AVFormatContext>?
    public let formatName: String
    private var headerWritten = false
    private var trailerWritten = false

    /// - Parameter format: a libavformat muxer name (`mp4`, `mpegts`, ...).
    public init(format: String) throws {
        formatName = format
        var ctx: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&ctx, nil, format, nil), "avformat_alloc_output_context2(\(format))")
        context = ctx
        try openBuffer()
    }

    deinit {
        if let c = context {
            if c.pointee.pb != nil {
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
