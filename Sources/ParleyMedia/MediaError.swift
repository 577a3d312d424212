import CFFmpeg

/// The one error type of ParleyMedia: a libav call that failed, with libav's
/// own message (`av_make_error_string`), or a condition libav does not name.
public struct MediaError: Error, CustomStringConvertible, Sendable {
    /// The libav return code (`AVERROR(...)`), or 0 when the error is ours.
    public let code: Int32
    /// The libav function (or the step) that failed.
    public let function: String
    /// libav's message for `code`, or our own explanation.
    public let message: String

    public init(code: Int32, function: String) {
        self.code = code
        self.function = function
        self.message = MediaError.string(for: code)
    }

    public init(_ function: String, _ message: String) {
        self.code = 0
        self.function = function
        self.message = message
    }

    public var description: String { "\(function): \(message)" }

    /// True when the error is `AVERROR_EOF`.
    public var isEOF: Bool { code == parley_averror_eof() }

    /// True when the system failed rather than the data: an I/O error, no
    /// space or memory, a timeout. Trying again later may succeed.
    public var isSystemError: Bool {
        [EIO, ENOSPC, ENOMEM, EAGAIN, ETIMEDOUT, EINTR, ESTALE, ENFILE, EMFILE].contains { code == parley_averror($0) }
    }

    static func string(for code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 256)
        return buf.withUnsafeMutableBufferPointer { b -> String in
            _ = parley_av_err2str(code, b.baseAddress!, b.count)
            return String(cString: b.baseAddress!)
        }
    }
}

/// Throws a `MediaError` when a libav call returned a negative code.
@inline(__always)
@discardableResult
func check(_ ret: Int32, _ function: @autoclosure () -> String) throws -> Int32 {
    if ret < 0 { throw MediaError(code: ret, function: function()) }
    return ret
}

/// Sets libav's global log level once (libav prints to stderr otherwise).
public enum MediaLog {
    /// Quiet: only fatal libav messages. Parley reports errors itself.
    public static func quiet() { av_log_set_level(AV_LOG_FATAL) }
    public static func verbose() { av_log_set_level(AV_LOG_INFO) }
}

/// A time base as a Swift value.
public struct Rational: Sendable, Equatable, CustomStringConvertible {
    public var num: Int32
    public var den: Int32
    public init(_ num: Int32, _ den: Int32) { self.num = num; self.den = den }
    public init(_ r: AVRational) { num = r.num; den = r.den }
    public var av: AVRational { AVRational(num: num, den: den) }
    public var double: Double { den == 0 ? 0 : Double(num) / Double(den) }
    public var description: String { "\(num)/\(den)" }
    /// Rescales `value` from `self` to `to`, rounding to nearest.
    public func rescale(_ value: Int64, to: Rational) -> Int64 { av_rescale_q(value, av, to.av) }
}
