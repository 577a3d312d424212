import CFFmpeg

/// A libavfilter graph with one video input and one output
/// (`buffer` → FILTERS → `buffersink`), built from a description as
/// ffmpeg's `-vf` takes it; frees the graph in `deinit`.
public final class VideoFilter: @unchecked Sendable {
    private var graph: UnsafeMutablePointer<AVFilterGraph>?
    private var source: UnsafeMutablePointer<AVFilterContext>?
    private var sink: UnsafeMutablePointer<AVFilterContext>?

    /// - Parameters:
    ///   - filters: e.g. `zscale=t=linear,format=gbrpf32le`.
    ///   - input: a frame like those that will be pushed (size, pixel format, aspect).
    ///   - timeBase: time base of the pushed frames' pts.
    ///   - threads: filter threads, 0 = libav's choice.
    public init(_ filters: String, input: Frame, timeBase: Rational, threads: Int = 0) throws {
        guard let g = avfilter_graph_alloc() else { throw MediaError("avfilter_graph_alloc", "out of memory") }
        graph = g
        g.pointee.nb_threads = Int32(threads)
        let f = input.pointer.pointee
        let sar = f.sample_aspect_ratio.num > 0 && f.sample_aspect_ratio.den > 0 ? f.sample_aspect_ratio : AVRational(num: 1, den: 1)
        let args = "video_size=\(f.width)x\(f.height):pix_fmt=\(f.format):time_base=\(timeBase.num)/\(timeBase.den)"
            + ":pixel_aspect=\(sar.num)/\(sar.den)"
        try check(avfilter_graph_create_filter(&source, avfilter_get_by_name("buffer"), "in", args, nil, g),
                  "avfilter_graph_create_filter(buffer)")
        try check(avfilter_graph_create_filter(&sink, avfilter_get_by_name("buffersink"), "out", nil, nil, g),
                  "avfilter_graph_create_filter(buffersink)")
        // The description's open input is fed by `in`, its open output drains into `out`.
        var outputs = avfilter_inout_alloc(), inputs = avfilter_inout_alloc()
        defer { avfilter_inout_free(&outputs); avfilter_inout_free(&inputs) }
        guard let o = outputs, let i = inputs else { throw MediaError("avfilter_inout_alloc", "out of memory") }
        o.pointee.name = av_strdup("in"); o.pointee.filter_ctx = source; o.pointee.pad_idx = 0; o.pointee.next = nil
        i.pointee.name = av_strdup("out"); i.pointee.filter_ctx = sink; i.pointee.pad_idx = 0; i.pointee.next = nil
        try check(avfilter_graph_parse_ptr(g, filters, &inputs, &outputs, nil), "avfilter_graph_parse_ptr(\(filters))")
        try check(avfilter_graph_config(g, nil), "avfilter_graph_config(\(filters))")
    }

    deinit { avfilter_graph_free(&graph) }

    /// True when this libavfilter has every filter named.
    public static func has(_ names: [String]) -> Bool { names.allSatisfy { avfilter_get_by_name($0) != nil } }

    /// Feeds a frame (a new reference; the caller keeps `frame`), or nil at the end.
    public func push(_ frame: Frame?) throws {
        try check(av_buffersrc_add_frame_flags(source, frame?.pointer, Int32(AV_BUFFERSRC_FLAG_KEEP_REF)),
                  "av_buffersrc_add_frame_flags")
    }

    /// Takes the next filtered frame into `frame`; false when the graph needs
    /// more input or is drained.
    public func pull(into frame: Frame) throws -> Bool {
        let ret = av_buffersink_get_frame(sink, frame.pointer)
        if ret == parley_averror_eagain() || ret == parley_averror_eof() { return false }
        try check(ret, "av_buffersink_get_frame")
        return true
    }
}
