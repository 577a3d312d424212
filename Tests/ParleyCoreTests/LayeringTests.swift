import ParleyCore
import Foundation
import XCTest

/// No module imports one above it (issue #15).
///
/// Reads the target graph from Package.swift and the `import`s of every
/// target's Swift files on disk, and fails on
/// - an import of a package target the importing target does not declare
///   (even if it is reachable through another dependency),
/// - a declared dependency that points at the same or a higher layer of
///   `Layering.order`, or a cycle,
/// - a target that `Layering.order` does not name.
/// Test targets are not layered (they sit above what they test); they are
/// only held to importing what they declare.
final class LayeringTests: XCTestCase {
    func testThePackageHasNoUpwardUndeclaredOrCyclicImports() throws {
        let root = try Layering.packageRoot()
        let manifest = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let targets = Layering.parseManifest(manifest)
        XCTAssertGreaterThan(targets.count, 10, "Package.swift parsed to too few targets; is the parser out of date?")
        XCTAssertTrue(targets.contains { $0.name == "ParleyCore" })

        // Every folder under Sources/ and Tests/ is a target: catches a target the parser missed.
        let paths = Set(targets.map(\.path))
        for top in ["Sources", "Tests"] {
            let parent = root.appendingPathComponent(top)
            for folder in try FileManager.default.contentsOfDirectory(atPath: parent.path) where !folder.hasPrefix(".") {
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: parent.appendingPathComponent(folder).path, isDirectory: &isFolder),
                      isFolder.boolValue else { continue }
                XCTAssertTrue(paths.contains("\(top)/\(folder)"), "\(top)/\(folder) is not a target Package.swift declares (or the parser missed it)")
            }
        }

        var imports: [String: Set<String>] = [:]
        for target in targets {
            imports[target.name] = try Layering.imports(ofSwiftFilesUnder: root.appendingPathComponent(target.path))
        }
        let violations = Layering.check(targets: targets, imports: imports, order: Layering.order)
        XCTAssertEqual(violations, [], "\n" + violations.joined(separator: "\n"))
    }

    // MARK: The checker fails when it should

    private let order = [["CLow"], ["Core"], ["IO"], ["RTP", "STUN"], ["Relay"], ["Server"]]

    func testAnUpwardEdgeFails() {
        let targets = [t("Core", ["IO"]), t("IO", [])]
        XCTAssertEqual(Layering.check(targets: targets, imports: ["Core": ["IO"]], order: order),
                       ["Core depends on IO, which is not below it in Layering.order"])
    }

    func testAnEdgeWithinOneLayerFails() {
        let targets = [t("RTP", ["STUN"]), t("STUN", [])]
        XCTAssertEqual(Layering.check(targets: targets, imports: [:], order: order),
                       ["RTP depends on STUN, which is not below it in Layering.order"])
    }

    func testAnUndeclaredImportFailsEvenWhenTransitivelyAvailable() {
        let targets = [t("Core", []), t("IO", ["Core"]), t("Relay", ["IO"]),
                       t("RelayTests", ["Relay"], test: true)]
        let imports: [String: Set<String>] = ["IO": ["Core", "Glibc"], "Relay": ["IO", "Core", "Foundation"],
                                              "RelayTests": ["Relay", "IO", "XCTest"]]
        XCTAssertEqual(Layering.check(targets: targets, imports: imports, order: order),
                       ["Relay imports Core without declaring it in Package.swift",
                        "RelayTests imports IO without declaring it in Package.swift"])
    }

    func testACycleFails() {
        // Without a layer order a cycle is still found (the order check would report each edge too).
        let targets = [t("Core", ["Relay"]), t("IO", ["Core"]), t("Relay", ["IO"])]
        let cycles = Layering.cycles(in: targets)
        XCTAssertEqual(cycles, [["Core", "Relay", "IO", "Core"]])
        XCTAssertTrue(Layering.check(targets: targets, imports: [:], order: order)
            .contains("cycle: Core → Relay → IO → Core"))
    }

    func testAnUnknownTargetFailsAndSaysWhereToAddIt() {
        let targets = [t("Core", []), t("Chat", ["Core"]), t("ChatTests", ["Chat"], test: true)]
        XCTAssertEqual(Layering.check(targets: targets, imports: [:], order: order),
                       ["Chat is not in Layering.order (Tests/ParleyCoreTests/LayeringTests.swift): add it to the layer it belongs to"])
    }

    func testAGoodGraphPasses() {
        let targets = [t("CLow", []), t("Core", []), t("IO", ["Core", "CLow"]), t("RTP", ["Core"]),
                       t("Relay", ["IO", "RTP", "Core"]), t("Server", ["Relay"]),
                       t("ServerTests", ["Server", "Core"], test: true)]
        let imports: [String: Set<String>] = ["IO": ["Core", "CLow", "Glibc"], "Relay": ["IO", "RTP"],
                                              "Server": ["Relay", "Foundation"], "ServerTests": ["Server", "Core", "XCTest"]]
        XCTAssertEqual(Layering.check(targets: targets, imports: imports, order: order), [])
    }

    func testImportsAreReadFromEveryFormAndNotFromStringsOrComments() {
        let source = #"""
            import Foundation
            @testable import ParleyRelay
            @preconcurrency import Dispatch
            import struct ParleyIO.SocketAddress
            public import ParleyCore; import ParleyRTP
            #if canImport(Glibc)
                import Glibc
            #endif
            // import ParleyServer
            /* import ParleyWeb */
            let script = """
                import sys
                """
            let important = 1
            """#
        XCTAssertEqual(Layering.imports(inSwiftSource: source),
                       ["Foundation", "ParleyRelay", "Dispatch", "ParleyIO", "ParleyCore", "ParleyRTP", "Glibc"])
    }

    func testTheManifestParserReadsNamesDependenciesAndPaths() {
        let manifest = """
            let package = Package(name: "P", targets: [
                // .target(name: "Commented"),
                .target(name: "CLow", path: "CSystemLibs/CLow"),
                .systemLibrary(name: "CSys", path: "CSystemLibs/CSys", pkgConfig: "x",
                               providers: [.apt(["libx-dev"])]),
                .target(name: "Core"),
                .target(name: "IO", dependencies: ["Core", .target(name: "CLow"), .byName(name: "CSys")]),
                .executableTarget(name: "tool", dependencies: ["IO"]),
                .target(name: "Support", path: "Tests/Support"),
                .testTarget(name: "IOTests", dependencies: [
                    "IO", "Support",
                ]),
            ])
            """
        XCTAssertEqual(Layering.parseManifest(manifest), [
            t("CLow", [], path: "CSystemLibs/CLow"), t("CSys", [], path: "CSystemLibs/CSys"),
            t("Core", []), t("IO", ["Core", "CLow", "CSys"]), t("tool", ["IO"]),
            t("Support", [], path: "Tests/Support"), t("IOTests", ["IO", "Support"], test: true),
        ])
    }

    private func t(_ name: String, _ dependencies: [String], test: Bool = false, path: String? = nil) -> Layering.Target {
        Layering.Target(name: name, dependencies: dependencies, isTest: test,
                        path: path ?? (test ? "Tests/\(name)" : "Sources/\(name)"))
    }
}

/// The layer order and the checker behind `LayeringTests`.
enum Layering {
    /// The one place the layer order is written down, bottom to top. A target
    /// may depend only on targets in layers below its own; targets in one
    /// layer do not use each other. Names not yet in Package.swift are the
    /// modules ../shared/DESIGN.md and issue #15 plan, so they have a place
    /// when they land. A new target must be added here.
    static let order: [[String]] = [
        ["CLinux", "COpus", "CFFmpeg", "CSRTP", "COpenSSL", "CSQLite"],  // C shims and system libraries
        ["ParleyCore"],
        ["ParleyIO"],
        ["ParleyStore"],
        ["ParleyRTP", "ParleySTUN", "ParleySRTP", "ParleyHTTP", "ParleySDP"],  // pure protocol codecs
        ["ParleyDTLS"],  // DTLS-SRTP, on SRTP's key material
        ["ParleyAuth"],
        ["ParleyWeb"],
        ["ParleyRelay"],
        ["ParleyProtocol"],
        ["ParleySignalling"],
        ["ParleyChat"],
        ["ParleyMedia"],
        ["ParleyRecord"],
        ["ParleyTranscode"],
        ["ParleyLoad"],
        ["ParleyServer"],
        ["ParleyBench"],  // benchmark servers behind `parley bench`
        ["parley", "parley-bench"],  // executables
        ["ParleyTestSupport"],  // test helpers: only test targets may use them
    ]

    struct Target: Equatable {
        var name: String
        var dependencies: [String]
        var isTest: Bool
        /// Folder holding the target's sources, relative to the package root.
        var path: String
    }

    /// Every violation, one readable line each, in a stable order; empty when the package is layered.
    static func check(targets: [Target], imports: [String: Set<String>], order: [[String]]) -> [String] {
        var rank: [String: Int] = [:]
        for (index, layer) in order.enumerated() { for name in layer { rank[name] = index } }
        let packageTargets = Set(targets.map(\.name))
        var problems: [String] = []
        for target in targets {
            if !target.isTest {
                guard let own = rank[target.name] else {
                    problems.append("\(target.name) is not in Layering.order (Tests/ParleyCoreTests/LayeringTests.swift): add it to the layer it belongs to")
                    continue
                }
                for dependency in target.dependencies {
                    if let theirs = rank[dependency], theirs >= own {
                        problems.append("\(target.name) depends on \(dependency), which is not below it in Layering.order")
                    }
                }
            }
            // Anything that is not a package target is a toolchain or system module (Foundation, Glibc, XCTest…).
            let declared = Set(target.dependencies)
            for module in (imports[target.name] ?? []).sorted() where packageTargets.contains(module) && !declared.contains(module) {
                problems.append("\(target.name) imports \(module) without declaring it in Package.swift")
            }
        }
        problems += cycles(in: targets).map { "cycle: " + $0.joined(separator: " → ") }
        return problems
    }

    /// Each dependency cycle once, as a path that starts and ends at the same target.
    static func cycles(in targets: [Target]) -> [[String]] {
        let edges = Dictionary(targets.map { ($0.name, $0.dependencies) }, uniquingKeysWith: { a, _ in a })
        var state: [String: Bool] = [:]  // false: on the current path; true: finished
        var path: [String] = []
        var found: [[String]] = []
        func visit(_ node: String) {
            state[node] = false
            path.append(node)
            for next in edges[node] ?? [] {
                switch state[next] {
                case nil: visit(next)
                case false?: found.append(Array(path[path.firstIndex(of: next)!...]) + [next])
                case true?: break
                }
            }
            path.removeLast()
            state[node] = true
        }
        for target in targets where state[target.name] == nil { visit(target.name) }
        return found
    }

    // MARK: Reading Package.swift

    /// The targets of a manifest written the way Parley's is: `.target`,
    /// `.executableTarget`, `.testTarget`, `.systemLibrary` calls with
    /// string-literal `name:`, `path:` and `dependencies:` (plain names,
    /// `.target(name:)`, `.byName(name:)`).
    static func parseManifest(_ text: String) -> [Target] {
        let source = Array(stripLineComments(text))
        let kinds = ["testTarget", "executableTarget", "target", "systemLibrary", "plugin", "macro"]
        var targets: [Target] = []
        var index = 0
        while index < source.count {
            guard source[index] == ".", let kind = kinds.first(where: { source.hasPrefix($0 + "(", at: index + 1) }) else {
                index += 1
                continue
            }
            let open = index + 1 + kind.count
            let close = matchingParenthesis(in: source, openingAt: open)
            let arguments = String(source[(open + 1)..<close])
            index = close + 1
            guard let name = firstStringArgument("name", in: arguments) else { continue }  // e.g. `.target(name:)` as a dependency
            var dependencies: [String] = []
            if let range = arguments.range(of: "dependencies:") {
                let rest = Array(arguments[range.upperBound...])
                if let start = rest.firstIndex(of: "[") {
                    let end = matchingBracket(in: rest, openingAt: start)
                    dependencies = stringLiterals(in: String(rest[(start + 1)..<end]))
                }
            }
            let isTest = kind == "testTarget"
            let path = firstStringArgument("path", in: arguments) ?? (isTest ? "Tests/\(name)" : "Sources/\(name)")
            targets.append(Target(name: name, dependencies: dependencies, isTest: isTest, path: path))
        }
        return targets
    }

    private static func stripLineComments(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            var inString = false
            var previous: Character = " "
            for position in line.indices {
                let c = line[position]
                if c == "\"" { inString.toggle() }
                if !inString, c == "/", previous == "/" { return line[..<line.index(before: position)] }
                previous = c
            }
            return line
        }.joined(separator: "\n")
    }

    private static func matchingParenthesis(in source: [Character], openingAt open: Int) -> Int {
        matching(in: source, openingAt: open, opener: "(", closer: ")")
    }

    private static func matchingBracket(in source: [Character], openingAt open: Int) -> Int {
        matching(in: source, openingAt: open, opener: "[", closer: "]")
    }

    private static func matching(in source: [Character], openingAt open: Int, opener: Character, closer: Character) -> Int {
        var depth = 0
        var inString = false
        for index in open..<source.count {
            let c = source[index]
            if c == "\"" { inString.toggle() }
            if inString { continue }
            if c == opener { depth += 1 }
            if c == closer { depth -= 1; if depth == 0 { return index } }
        }
        return source.count
    }

    /// `"X"` in `label: "X"` at the top level of an argument list.
    private static func firstStringArgument(_ label: String, in arguments: String) -> String? {
        var depth = 0
        var inString = false
        let chars = Array(arguments)
        var index = 0
        while index < chars.count {
            let c = chars[index]
            if c == "\"" { inString.toggle() }
            if !inString {
                if c == "(" || c == "[" { depth += 1 }
                if c == ")" || c == "]" { depth -= 1 }
                if depth == 0, chars.hasPrefix(label + ":", at: index),
                   index == 0 || !(chars[index - 1].isLetter || chars[index - 1].isNumber) {
                    return stringLiterals(in: String(chars[(index + label.count + 1)...])).first
                }
            }
            index += 1
        }
        return nil
    }

    private static func stringLiterals(in text: String) -> [String] {
        text.split(separator: "\"", omittingEmptySubsequences: false).enumerated()
            .filter { $0.offset % 2 == 1 }.map { String($0.element) }
    }

    // MARK: Reading imports

    static func imports(ofSwiftFilesUnder folder: URL) throws -> Set<String> {
        guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) else { return [] }
        var modules: Set<String> = []
        for case let file as URL in walker where file.pathExtension == "swift" {
            modules.formUnion(imports(inSwiftSource: try String(contentsOf: file, encoding: .utf8)))
        }
        return modules
    }

    /// Modules named by `import` declarations in any form (`@testable import X`,
    /// `import struct X.Y`, `public import X`, `#if`-guarded), skipping
    /// comments and multi-line string literals (embedded scripts).
    static func imports(inSwiftSource source: String) -> [String] {
        let modifiers: Set<String> = ["public", "package", "internal", "fileprivate", "private", "open"]
        let kinds: Set<String> = ["struct", "class", "enum", "protocol", "typealias", "func", "let", "var", "actor"]
        var found: [String] = []
        var inMultilineString = false
        var inBlockComment = false
        for line in source.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let quotes = trimmed.components(separatedBy: "\"\"\"").count - 1
            if inMultilineString { if quotes % 2 == 1 { inMultilineString = false }; continue }
            if quotes % 2 == 1 { inMultilineString = true; continue }
            if inBlockComment { if trimmed.contains("*/") { inBlockComment = false }; continue }
            if trimmed.hasPrefix("/*") { if !trimmed.contains("*/") { inBlockComment = true }; continue }
            for statement in trimmed.split(separator: ";") {
                var words = statement.split(whereSeparator: \.isWhitespace).map(String.init)
                while let first = words.first, first.hasPrefix("@") || modifiers.contains(first) { words.removeFirst() }
                guard words.first == "import", words.count >= 2 else { continue }
                let path = kinds.contains(words[1]) && words.count >= 3 ? words[2] : words[1]
                if let module = path.split(separator: ".").first { found.append(String(module)) }
            }
        }
        return found
    }

    // MARK: Finding the package

    static func packageRoot() throws -> URL {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while folder.path != "/" {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) { return folder }
            folder.deleteLastPathComponent()
        }
        throw CocoaError(.fileNoSuchFile)
    }
}

private extension Array where Element == Character {
    func hasPrefix(_ prefix: String, at index: Int) -> Bool {
        var position = index
        for c in prefix {
            guard position < count, self[position] == c else { return false }
            position += 1
        }
        return true
    }
}
