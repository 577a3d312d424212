/// A small command-line parser shared by every `parley` subcommand:
/// `--flag value`, `--flag=value`, boolean `--switch`, and positionals.
/// Unknown flags and missing values are usage errors (exit code 2).
public struct Arguments {
    public struct UsageError: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    public private(set) var values: [String: String] = [:]
    public private(set) var switches: Set<String> = []
    public private(set) var positionals: [String] = []

    /// - Parameters:
    ///   - options: flags that take a value (without the leading `--`).
    ///   - flags: boolean switches (without `--`); `help` is always accepted.
    public init(_ args: [String], options: Set<String>, flags: Set<String>) throws {
        var i = 0
        var onlyPositionals = false
        while i < args.count {
            let a = args[i]
            i += 1
            if onlyPositionals || !a.hasPrefix("-") || a == "-" {
                positionals.append(a)
                continue
            }
            if a == "--" { onlyPositionals = true; continue }
            if a == "-h" { switches.insert("help"); continue }
            guard a.hasPrefix("--") else { throw UsageError("unknown option \(a)") }
            var name = String(a.dropFirst(2))
            var inline: String?
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            if options.contains(name) {
                if let v = inline {
                    values[name] = v
                } else {
                    guard i < args.count else { throw UsageError("--\(name) needs a value") }
                    values[name] = args[i]
                    i += 1
                }
            } else if flags.contains(name) || name == "help" {
                guard inline == nil else { throw UsageError("--\(name) takes no value") }
                switches.insert(name)
            } else {
                throw UsageError("unknown option --\(name)")
            }
        }
    }

    public subscript(_ name: String) -> String? { values[name] }
    public func has(_ name: String) -> Bool { switches.contains(name) }
    public var wantsHelp: Bool { switches.contains("help") }
}

/// Exit codes every subcommand uses.
public enum ExitCode {
    public static let ok: Int32 = 0
    /// The work itself failed (bad input file, a job failed, a server error).
    public static let failure: Int32 = 1
    /// The command line or the config file is wrong.
    public static let usage: Int32 = 2
}
