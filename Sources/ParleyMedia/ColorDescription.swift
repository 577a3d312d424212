import CFFmpeg

/// How a picture's sample values map to colours: primaries, transfer
/// characteristic, matrix coefficients and range (ITU-T H.273 code points,
/// as libav names them). Unspecified fields are unknown, not "default".
public struct ColorDescription: Sendable, Equatable {
    public var primaries: AVColorPrimaries
    public var transfer: AVColorTransferCharacteristic
    public var matrix: AVColorSpace
    public var range: AVColorRange

    public init(primaries: AVColorPrimaries = AVCOL_PRI_UNSPECIFIED, transfer: AVColorTransferCharacteristic = AVCOL_TRC_UNSPECIFIED,
                matrix: AVColorSpace = AVCOL_SPC_UNSPECIFIED, range: AVColorRange = AVCOL_RANGE_UNSPECIFIED) {
        self.primaries = primaries; self.transfer = transfer; self.matrix = matrix; self.range = range
    }

    /// SDR HD video: BT.709 primaries, transfer and matrix, limited range.
    public static let bt709 = ColorDescription(primaries: AVCOL_PRI_BT709, transfer: AVCOL_TRC_BT709,
                                               matrix: AVCOL_SPC_BT709, range: AVCOL_RANGE_MPEG)

    /// This description with its unspecified fields taken from `other`.
    public func filled(from other: ColorDescription) -> ColorDescription {
        ColorDescription(primaries: primaries == AVCOL_PRI_UNSPECIFIED ? other.primaries : primaries,
                         transfer: transfer == AVCOL_TRC_UNSPECIFIED ? other.transfer : transfer,
                         matrix: matrix == AVCOL_SPC_UNSPECIFIED ? other.matrix : matrix,
                         range: range == AVCOL_RANGE_UNSPECIFIED ? other.range : range)
    }

    /// libav's name of the transfer characteristic (`smpte2084`, `bt709`, ...).
    public var transferName: String { av_color_transfer_name(transfer).map { String(cString: $0) } ?? "unknown" }
}
