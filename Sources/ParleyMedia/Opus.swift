import COpus

/// A libopus encoder (48 kHz); destroyed in `deinit`. Encodes interleaved
/// float PCM, one frame (2.5-60 ms of samples) per call.
public final class OpusEncoder: @unchecked Sendable {
    private let encoder: OpaquePointer
    public let channels: Int

    /// - Parameter application: `OPUS_APPLICATION_AUDIO` or `OPUS_APPLICATION_VOIP`.
    public init(channels: Int, bitRate: Int = 64_000, application: Int32 = OPUS_APPLICATION_AUDIO) throws {
        var err: Int32 = 0
        guard let e = opus_encoder_create(48000, Int32(channels), application, &err), err == OPUS_OK else {
            throw MediaError("opus_encoder_create", OpusDecoder.message(err))
        }
        encoder = e
        self.channels = channels
        _ = parley_opus_set_bitrate(e, Int32(bitRate))
    }

    deinit { opus_encoder_destroy(encoder) }

    /// Samples (per channel) the encoder delays its output by: the Ogg
    /// pre-skip of a stream it makes.
    public var lookahead: Int { Int(parley_opus_get_lookahead(encoder)) }

    /// Encodes one frame of `samples.count / channels` samples per channel.
    public func encode(_ samples: [Float]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 4000)
        let n = opus_encode_float(encoder, samples, Int32(samples.count / channels), &out, Int32(out.count))
        guard n > 0 else { throw MediaError("opus_encode_float", OpusDecoder.message(n)) }
        return Array(out[0..<Int(n)])
    }
}

/// A libopus decoder (48 kHz) producing interleaved float PCM; destroyed in `deinit`.
public final class OpusDecoder: @unchecked Sendable {
    private let decoder: OpaquePointer
    public let channels: Int
    private var pcm: [Float]

    public init(channels: Int) throws {
        var err: Int32 = 0
        guard let d = opus_decoder_create(48000, Int32(channels), &err), err == OPUS_OK else {
            throw MediaError("opus_decoder_create", OpusDecoder.message(err))
        }
        decoder = d
        self.channels = channels
        pcm = [Float](repeating: 0, count: 5760 * channels)
    }

    deinit { opus_decoder_destroy(decoder) }

    /// Decodes one Opus packet (RFC 6716) into interleaved samples.
    public func decode(_ packet: [UInt8]) throws -> ArraySlice<Float> {
        let n = opus_decode_float(decoder, packet, Int32(packet.count), &pcm, 5760, 0)
        guard n >= 0 else { throw MediaError("opus_decode_float", OpusDecoder.message(n)) }
        return pcm[0..<(Int(n) * channels)]
    }

    static func message(_ code: Int32) -> String { String(cString: opus_strerror(code)) }

    /// The Opus identification header (RFC 7845 §5.1) a container carries
    /// as codec private data (`OpusHead`, version 1, mapping family 0).
    public static func identificationHeader(channels: Int, preSkip: Int) -> [UInt8] {
        var h = Array("OpusHead".utf8)
        h += [1, UInt8(channels), UInt8(preSkip & 0xFF), UInt8(preSkip >> 8)]
        h += [0x80, 0xBB, 0, 0]  // input sample rate 48000, little-endian
        h += [0, 0, 0]  // output gain 0, channel mapping family 0
        return h
    }
}
