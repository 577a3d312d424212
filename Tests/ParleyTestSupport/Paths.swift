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
