import CFFmpeg
import ParleyMedia

/// The dynamic range of a video, named as HLS's `VIDEO-RANGE` names it.
public enum VideoRange: String, Sendable, Codable {
    case sdr = "SDR", pq = "PQ", hlg = "HLG"

    /// PQ (SMPTE ST 2084) and HLG (ARIB STD-B67) are HDR; any other transfer is SDR.
    public init(transfer: AVColorTransferCharacteristic) {
        switch transfer {
        case AVCOL_TRC_SMPTE2084: self = .pq
        case AVCOL_TRC_ARIB_STD_B67: self = .hlg
        default: self = .sdr
        }
    }

    public var isHDR: Bool { self != .sdr }

    /// HDR to SDR BT.709 at `width`×`height`, the chain ffmpeg's
    /// documentation gives: linearise (zimg, 100 nit nominal peak) while
    /// scaling to the largest rung (tone-mapping costs per pixel, and a
    /// 4K phone video rarely needs more than 1080p), convert BT.2020
    /// primaries to BT.709 in linear light, compress highlights with
    /// Hable's curve, then BT.709 transfer and matrix, limited range, 8-bit
    /// 4:2:0 as every rung encodes.
    static func toneMapFilters(width: Int, height: Int) -> String {
        "zscale=w=\(width):h=\(height):f=bicubic:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
            + "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
    }

    /// What PQ and HLG sources are mastered in, for the fields a stream leaves unspecified.
    static let bt2020 = ColorDescription(primaries: AVCOL_PRI_BT2020, transfer: AVCOL_TRC_UNSPECIFIED,
                                         matrix: AVCOL_SPC_BT2020_NCL, range: AVCOL_RANGE_MPEG)
}
