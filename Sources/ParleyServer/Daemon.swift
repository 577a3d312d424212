import Foundation
import ParleyCore

/// Wires the daemon's parts together and runs until SIGINT/SIGTERM.
enum Daemon {
    static func run(config: ServerConfig) -> Int32 {
        FileHandle.standardError.write(Data("parley serve: the event loop is not wired in yet\n".utf8))
        return ExitCode.failure
    }
}
