import Foundation

/// A small command-line parser shared by every `parley` subcommand:
/// `--flag value`, `--flag=value`, boolean `--switch`, and positionals.
/// Unknown flags (with the nearest known one suggested) and missing values
/// are usage errors (exit code 2).
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
                let near = nearestName(to: name, in: options.union(flags).union(["help"]))
                throw UsageError("unknown option --\(name)\(near.map { "; did you mean --\($0)?" } ?? "")")
            }
        }
    }

    public subscript(_ name: String) -> String? { values[name] }
    public func has(_ name: String) -> Bool { switches.contains(name) }
    public var wantsHelp: Bool { switches.contains("help") }
}

/// The candidate closest to a mistyped `name` by edit distance (Levenshtein:
/// insertions, deletions, substitutions), if it is close enough to be the
/// likely intent: at most 2 edits, and fewer than half of the name's length.
public func nearestName(to name: String, in candidates: some Sequence<String>) -> String? {
    let a = Array(name.utf8)
    var best: (name: String, distance: Int)?
    for c in candidates.sorted() {
        let d = editDistance(a, Array(c.utf8))
        if d <= 2, d * 2 < a.count, d < (best?.distance ?? .max) { best = (c, d) }
    }
    return best?.name
}

func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    // One row of the dynamic-programming table at a time.
    var row = Array(0...b.count)
    for i in a.indices {
        var diagonal = row[0]
        row[0] = i + 1
        for j in b.indices {
            let above = row[j + 1]
            row[j + 1] = min(above + 1, row[j] + 1, diagonal + (a[i] == b[j] ? 0 : 1))
            diagonal = above
        }
    }
    return row[b.count]
}

/// Exit codes every subcommand uses.
public enum ExitCode {
    public static let ok: Int32 = 0
    /// The work itself failed (bad input file, a job failed, a server error).
    public static let failure: Int32 = 1
    /// The command line or the config file is wrong.
    public static let usage: Int32 = 2
}

/// Writes `text` and `terminator` to stderr, unbuffered, like `print` does
/// to stdout: the one way commands and the daemon show a person an error or
/// a note. (Structured logs go through `Logger`.)
public func printError(_ text: String, terminator: String = "\n") {
    FileHandle.standardError.write(Data((text + terminator).utf8))
}
