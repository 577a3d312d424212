import Glibc

/// The one error type of ParleyRecord.
public enum RecordError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A system call on a recording's files failed.
    case system(function: String, path: String, errno: Int32)
    /// `index.json` or a capture file is not what the recorder writes.
    case badRecording(path: String, reason: String)
    /// A recording with this id is already running.
    case alreadyRecording(String)
    /// Export failed in libav or libopus.
    case export(String)

    public var description: String {
        switch self {
        case .system(let f, let p, let e): return "\(f)(\(p)): \(String(cString: strerror(e)))"
        case .badRecording(let p, let r): return "\(p): \(r)"
        case .alreadyRecording(let id): return "recording \(id) is already running"
        case .export(let m): return "export: \(m)"
        }
    }
}
