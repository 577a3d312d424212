import Foundation
import Synchronization

/// Log severity, ordered.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug = 0, info, warn, error

    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warn: return "warn"
        case .error: return "error"
        }
    }

    public init?(name: String) {
        guard let l = LogLevel.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = l
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// A JSON-lines logger: one object per line with `ts`, `level`, `msg` and
/// the caller's fields. Thread-safe; writes go straight to the file
/// descriptor (stderr by default) so lines from threads never interleave.
public final class Logger: Sendable {
    public let label: String
    private let minLevel: Atomic<Int>
    private let fd: Int32

    public init(label: String, level: LogLevel = .info, fd: Int32 = 2) {
        self.label = label
        self.minLevel = Atomic(level.rawValue)
        self.fd = fd
    }

    public var level: LogLevel {
        get { LogLevel(rawValue: minLevel.load(ordering: .relaxed)) ?? .info }
        set { minLevel.store(newValue.rawValue, ordering: .relaxed) }
    }

    public func isEnabled(_ level: LogLevel) -> Bool { level.rawValue >= minLevel.load(ordering: .relaxed) }

    public func log(_ level: LogLevel, _ message: String, _ fields: [String: LogValue] = [:]) {
        guard isEnabled(level) else { return }
        var line = "{\"ts\":\"\(Logger.timestamp())\",\"level\":\"\(level.name)\",\"logger\":"
        JSONValue.writeString(label, into: &line)
        line += ",\"msg\":"
        JSONValue.writeString(message, into: &line)
        for key in fields.keys.sorted() {
            line += ","
            JSONValue.writeString(key, into: &line)
            line += ":"
            fields[key]!.appendJSON(to: &line)
        }
        line += "}\n"
        _ = writeAll(fd, Array(line.utf8))
    }

    public func debug(_ m: String, _ f: [String: LogValue] = [:]) { log(.debug, m, f) }
    public func info(_ m: String, _ f: [String: LogValue] = [:]) { log(.info, m, f) }
    public func warn(_ m: String, _ f: [String: LogValue] = [:]) { log(.warn, m, f) }
    public func error(_ m: String, _ f: [String: LogValue] = [:]) { log(.error, m, f) }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let ms = Int(ts.tv_nsec) / 1_000_000
        func p(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let msS = String(ms)
        return "\(p(tmv.tm_year + 1900, 4))-\(p(tmv.tm_mon + 1, 2))-\(p(tmv.tm_mday, 2))T\(p(tmv.tm_hour, 2)):\(p(tmv.tm_min, 2)):\(p(tmv.tm_sec, 2)).\(String(repeating: "0", count: 3 - msS.count))\(msS)Z"
    }
}

/// A value in a log line's fields.
public enum LogValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)

    public init(stringLiteral v: String) { self = .string(v) }
    public init(integerLiteral v: Int) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }

    func appendJSON(to out: inout String) {
        switch self {
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? String(d) : "null"
        case .bool(let b): out += b ? "true" : "false"
        }
    }
}
