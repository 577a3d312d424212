import Foundation
import XCTest
import ParleyTestSupport
import ParleyServer

/// The docs name metrics, flags and message types; each must exist in what
/// the code actually serves, so docs and code cannot drift apart unnoticed:
/// - every `parley_…` metric in docs/ and README.md is on a running daemon's `/metrics`;
/// - every `--flag` is in the `--help` of some `parley` command;
/// - every signalling message `type` and error `code` is a string the code uses;
/// and the other way: every metric `/metrics` serves and every config key is in the docs.
final class DocsMatchCodeTests: XCTestCase {
    /// Flags of other programs that the docs show next to ours.
    static let foreignFlags: Set<String> = [
        "--cacert",   // curl, in docs/operations.md
    ]

    static let docFiles = ["README.md", "docs/protocol.md", "docs/operations.md", "docs/security.md",
                           "docs/benchmarks.md", "docs/architecture.md"]

    func docsText() throws -> [(file: String, text: String)] {
        Self.docFiles.compactMap { f in
            let path = repositoryPath(f)
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            return (f, try! String(contentsOfFile: path, encoding: .utf8))
        }
    }

    func testEveryDocumentedMetricIsServed() throws {
        var documented: [String: String] = [:] // name → first file naming it
        for (file, text) in try docsText() {
            for raw in Self.matches(#"parley_[a-z0-9_]*(?:\{[a-z0-9_,]+\}[a-z0-9_]*)*"#, in: text) {
                for name in Self.expandBraces(raw) where !name.hasSuffix("_") {
                    documented[name] = documented[name] ?? file
                }
            }
        }
        XCTAssertGreaterThan(documented.count, 20, "the docs name metrics; did the pattern break?")

        let dataDir = tempDir("docs-metrics")
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let served = try Self.metricsOfRunningDaemon(dataDir: dataDir)
        let families = Set(served.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("# TYPE ") else { return nil }
            return line.split(separator: " ").dropFirst(2).first.map(String.init)
        })
        XCTAssertFalse(families.isEmpty, "no metrics served")
        for (name, file) in documented.sorted(by: { $0.key < $1.key }) {
            let base = ["_bucket", "_sum", "_count"].reduce(name) { n, s in
                n.hasSuffix(s) && families.contains(String(n.dropLast(s.count))) ? String(n.dropLast(s.count)) : n
            }
            XCTAssertTrue(families.contains(base), "\(file) names metric \(name), which /metrics does not serve")
        }
        // And the other way: what the daemon serves, the docs name.
        for family in families.sorted() where family.hasPrefix("parley_") && documented[family] == nil {
            XCTFail("/metrics serves \(family), which no doc names")
        }
    }

    /// Every key a config file may hold is in docs/operations.md's tables (the flags test reads the docs the other way).
    func testEveryConfigKeyIsDocumented() throws {
        let operations = try String(contentsOfFile: repositoryPath("docs/operations.md"), encoding: .utf8)
        XCTAssertGreaterThan(ServerConfig.keys.count, 50)
        for (key, _) in ServerConfig.keys where !operations.contains("`\(key)`") {
            XCTFail("config key \(key) is not in docs/operations.md")
        }
    }

    func testEveryDocumentedFlagIsInSomeHelp() throws {
        var help = try Self.helpText([])
        let commands = Self.matches(#"(?m)^  ([a-z]+) {2,}"#, in: help, group: 1)
        XCTAssertTrue(commands.contains("serve"), "parley --help lists no commands:\n\(help)")
        for c in commands {
            let h = try Self.helpText([c])
            help += h
            if c == "bench" {
                for b in Self.matches(#"(?m)^  ([a-z][a-z0-9-]+) {2,}"#, in: h, group: 1) { help += try Self.helpText([c, b]) }
            }
        }
        let known = Set(Self.matches(#"(?<![A-Za-z0-9-])--[a-z][a-z0-9-]*"#, in: help))
        for (file, text) in try docsText() {
            for flag in Set(Self.matches(#"(?<![A-Za-z0-9-])--[a-z][a-z0-9-]*"#, in: text))
            where !known.contains(flag) && !Self.foreignFlags.contains(flag) {
                XCTFail("\(file) names \(flag), which no `parley … --help` lists")
            }
        }
    }

    func testEveryDocumentedMessageTypeAndErrorCodeIsInTheCode() throws {
        let protocolText = try String(contentsOfFile: repositoryPath("docs/protocol.md"), encoding: .utf8)
        var names = Set(Self.matches(#""(?:type|code)":\s*"([a-z_.]+)""#, in: protocolText, group: 1))
        // First column of the tables headed `type` or `code` (events, error codes).
        var inTable = false
        for line in protocolText.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("| `type`") || line.hasPrefix("| `code`") { inTable = true; continue }
            guard inTable, line.hasPrefix("|") else { inTable = false; continue }
            names.formUnion(Self.matches(#"^\| `([a-z_.]+)`"#, in: String(line), group: 1))
        }
        XCTAssertGreaterThan(names.count, 20, "protocol.md names message types; did the pattern break?")
        let sources = try Self.swiftSources()
        for n in names.sorted() where !sources.contains("\"\(n)\"") {
            XCTFail("docs/protocol.md names message type or code \"\(n)\", which no Swift source uses")
        }
    }

    // MARK: Helpers

    static func helpText(_ args: [String]) throws -> String {
        let r = try runTool(parleyBinary, args + ["--help"], timeout: 30)
        XCTAssertEqual(r.status, 0, "parley \(args.joined(separator: " ")) --help: \(r.err)")
        return r.out + r.err
    }

    /// Starts `parley serve --insecure` on ephemeral ports, reads `/metrics` once, stops it.
    static func metricsOfRunningDaemon(dataDir: String) throws -> String {
        let base = Int.random(in: 20_000...60_000)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: parleyBinary)
        p.arguments = ["serve", "--insecure", "--listen", "127.0.0.1:0", "--stun", "127.0.0.1:0", "--loops", "1",
                       "--media-ports", "\(base)-\(base)", "--data-dir", dataDir, "--log-level", "error"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        var text = ""
        var address: String?
        while address == nil {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            text += String(decoding: chunk, as: UTF8.self)
            address = matches(#"listening http (\S+)"#, in: text, group: 1).first
        }
        guard let address else { XCTFail("parley serve did not start:\n\(text)"); return "" }
        // Two requests: the first registers the HTTP server's own metrics.
        _ = try runTool("curl", ["-s", "http://\(address)/healthz"])
        let r = try runTool("curl", ["-s", "http://\(address)/metrics"])
        XCTAssertEqual(r.status, 0)
        return r.out
    }

    static func swiftSources() throws -> String {
        let root = repositoryPath("Sources")
        var all = ""
        let e = FileManager.default.enumerator(atPath: root)!
        while let f = e.nextObject() as? String {
            if f.hasSuffix(".swift") { all += try String(contentsOfFile: root + "/" + f, encoding: .utf8) }
        }
        return all
    }

    static func matches(_ pattern: String, in text: String, group: Int = 0) -> [String] {
        let re = try! NSRegularExpression(pattern: pattern)
        let ns = text as NSString
        return re.matches(in: text, range: NSRange(location: 0, length: ns.length)).compactMap { m in
            let r = m.range(at: group)
            return r.location == NSNotFound ? nil : ns.substring(with: r)
        }
    }

    /// `a_{b,c}_d` → `a_b_d`, `a_c_d` (one level, several groups); a group
    /// without a comma is a label list (`total{reason}`) and is dropped.
    static func expandBraces(_ s: String) -> [String] {
        guard let open = s.firstIndex(of: "{"), let close = s[open...].firstIndex(of: "}") else { return [s] }
        let head = String(s[..<open]), tail = String(s[s.index(after: close)...])
        let group = s[s.index(after: open)..<close]
        guard group.contains(",") else { return expandBraces(head + tail) }
        return group.split(separator: ",").flatMap { expandBraces(head + $0 + tail) }
    }
}
