import Foundation

/// The repository root (Tests/ParleyTestSupport/Paths.swift → ../..), for
/// committed fixtures (tools/fuzz/corpus, tools/interop scripts) and the
/// built binary.
public let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// `path` relative to the repository root.
public func repositoryPath(_ path: String) -> String {
    repositoryRoot.appendingPathComponent(path).standardized.path
}

/// The `parley` binary the tests run: $PARLEY_BIN, else .build/debug/parley.
public var parleyBinary: String {
    ProcessInfo.processInfo.environment["PARLEY_BIN"] ?? repositoryPath(".build/debug/parley")
}

/// The committed inputs of one fuzz target (tools/fuzz/corpus/TARGET), in
/// name order without dot files, each named `corpus/TARGET/NAME`: what every
/// corpus replay test feeds through its module's self-check.
public func fuzzCorpus(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
    let dir = repositoryRoot.appendingPathComponent("tools/fuzz/corpus/\(target)")
    return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasPrefix(".") }.sorted().map {
        ("corpus/\(target)/\($0)", [UInt8](try Data(contentsOf: dir.appendingPathComponent($0))))
    }
}
