import CFFmpeg

/// What a demuxer knows about one stream of its input.
public struct StreamInfo: Sendable {
    public enum Kind: Sendable { case video, audio, other }
    public let index: Int
    public let kind: Kind
    public let codecID: AVCodecID
    public let codecName: String
    public let timeBase: Rational
    /// Video: average frame rate (or the real base frame rate when unknown).
    public let frameRate: Rational
    public let width: Int
    public let height: Int
    /// Video: the colour description the container or codec header gives.
    public let color: ColorDescription
    /// Video: degrees (0, 90, 180, 270) to turn each picture clockwise for
    /// display, from the container's display matrix (phones record this way).
    public let rotation: Int
    public let sampleRate: Int
    public let channels: Int
    /// Stream duration in seconds, 0 when unknown.
    public let duration: Double
    public let startTime: Int64
}

/// An input file opened with libavformat; closes it in `deinit`.
public final class Demuxer: @unchecked Sendable {
    public private(set) var context: UnsafeMutablePointer<AVFormatContext>?
    public let url: String
    public let streams: [StreamInfo]

    public init(url: String) throws {
        self.url = url
        var ctx: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_open_input(&ctx, url, nil, nil), "avformat_open_input(\(url))")
        let ret = avformat_find_stream_info(ctx, nil)
        if ret < 0 {
            avformat_close_input(&ctx)
            throw MediaError(code: ret, function: "avformat_find_stream_info")
        }
        context = ctx
        var infos: [StreamInfo] = []
        let c = ctx!.pointee
        for i in 0..<Int(c.nb_streams) {
            let stream = c.streams[i]!
            let st = stream.pointee
            let par = st.codecpar.pointee
            let kind: StreamInfo.Kind = par.codec_type == AVMEDIA_TYPE_VIDEO ? .video
                : par.codec_type == AVMEDIA_TYPE_AUDIO ? .audio : .other
            var rate = Rational(st.avg_frame_rate)
            if rate.num <= 0 || rate.den <= 0 { rate = Rational(st.r_frame_rate) }
            let tb = Rational(st.time_base)
            var dur = st.duration != Packet.noPTS && st.duration > 0 ? Double(st.duration) * tb.double : 0
            if dur <= 0, c.duration > 0 { dur = Double(c.duration) / Double(AV_TIME_BASE) }
            let name = avcodec_get_name(par.codec_id).map { String(cString: $0) } ?? "unknown"
            infos.append(StreamInfo(index: i, kind: kind, codecID: par.codec_id, codecName: name,
                                    timeBase: tb, frameRate: rate,
                                    width: Int(par.width), height: Int(par.height),
                                    color: ColorDescription(primaries: par.color_primaries, transfer: par.color_trc,
                                                            matrix: par.color_space, range: par.color_range),
                                    rotation: Demuxer.rotation(of: stream),
                                    sampleRate: Int(par.sample_rate), channels: Int(par.ch_layout.nb_channels),
                                    duration: dur, startTime: st.start_time))
        }
        streams = infos
    }

    deinit { avformat_close_input(&context) }

    /// The display matrix's rotation as ffmpeg's autorotate reads it,
    /// rounded to a quarter turn (0 when absent or not one).
    static func rotation(of stream: UnsafeMutablePointer<AVStream>) -> Int {
        var size = 0
        guard let m = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, &size), size >= 9 * 4 else { return 0 }
        let ccw = m.withMemoryRebound(to: Int32.self, capacity: 9) { av_display_rotation_get($0) }
        guard ccw.isFinite else { return 0 }
        let cw = (-Int(ccw.rounded()) % 360 + 360) % 360
        return [0, 90, 180, 270, 360].first { abs($0 - cw) < 1 }.map { $0 % 360 } ?? 0
    }

    /// Container duration in seconds (0 when unknown).
    public var duration: Double {
        guard let d = context?.pointee.duration, d > 0 else { return 0 }
        return Double(d) / Double(AV_TIME_BASE)
    }

    public var formatName: String {
        guard let n = context?.pointee.iformat?.pointee.name else { return "unknown" }
        return String(cString: n)
    }

    /// The stream libav considers best of a kind (nil when there is none).
    public func bestStream(_ kind: StreamInfo.Kind) -> StreamInfo? {
        let type = kind == .video ? AVMEDIA_TYPE_VIDEO : AVMEDIA_TYPE_AUDIO
        let i = av_find_best_stream(context, type, -1, -1, nil, 0)
        return i >= 0 ? streams[Int(i)] : nil
    }

    /// Asks the demuxer to drop every packet of streams not in `keep`.
    public func discardAll(except keep: Set<Int>) {
        guard let c = context?.pointee else { return }
        for i in 0..<Int(c.nb_streams) where !keep.contains(i) {
            c.streams[i]!.pointee.discard = AVDISCARD_ALL
        }
    }

    /// Reads the next packet into `packet`. Returns false at end of file.
    public func read(into packet: Packet) throws -> Bool {
        let ret = av_read_frame(context, packet.pointer)
        if ret == parley_averror_eof() { return false }
        try check(ret, "av_read_frame")
        return true
    }

    func codecParameters(_ index: Int) -> UnsafeMutablePointer<AVCodecParameters> {
        context!.pointee.streams[index]!.pointee.codecpar
    }
}
