import Foundation
import XCTest

// Running external programs (curl, python3, ffmpeg, openssl) from tests, and
// per-test temporary directories. Shared by the test targets.

/// Runs an external program (curl, python3, ffmpeg, openssl) and returns its
/// exit status and output; the timeout only guards against hangs. `exe` is
/// an absolute path or a name looked up on PATH (via /usr/bin/env).
@discardableResult
public func runTool(_ exe: String, _ args: [String], timeout: Double = 60, stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
    let r = try runProcess(exe, args, timeout: timeout, input: stdin.map { Array($0.utf8) })
    return (r.status, String(decoding: r.out, as: UTF8.self), String(decoding: r.err, as: UTF8.self))
}

/// `runTool` for binary data: feeds `input` (if any) on stdin, returns raw stdout and stderr.
@discardableResult
public func runProcess(_ exe: String, _ args: [String], timeout: Double = 60, input: [UInt8]? = nil) throws -> (status: Int32, out: Data, err: Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe.hasPrefix("/") ? exe : "/usr/bin/env")
    p.arguments = exe.hasPrefix("/") ? args : [exe] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let inPipe = Pipe()
    p.standardInput = inPipe
    try p.run()
    if let input { inPipe.fileHandleForWriting.write(Data(input)) }
    try? inPipe.fileHandleForWriting.close()
    // Read both pipes while waiting so a chatty child never blocks on a full pipe.
    let outData = LockedData(), errData = LockedData()
    let g = DispatchGroup()
    for (pipe, box) in [(out, outData), (err, errData)] {
        g.enter()
        DispatchQueue.global().async {
            box.set(pipe.fileHandleForReading.readDataToEndOfFile())
            g.leave()
        }
    }
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { p.terminate(); XCTFail("\(exe) timed out") }
    p.waitUntilExit()
    g.wait()
    return (p.terminationStatus, outData.get(), errData.get())
}

public final class LockedData: @unchecked Sendable {
    private let l = NSLock()
    private var d = Data()
    public init() {}
    public func set(_ x: Data) { l.withLock { d = x } }
    public func get() -> Data { l.withLock { d } }
}

public func tempDir(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "parley-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Starts `parley serve` on ephemeral ports (plus `extra` flags) and waits
/// for its `listening http(s)` line; returns the process, the stdout lines
/// so far, and stdout to read on.
public func startServe(dataDir: String, insecure: Bool = true, extra: [String] = []) throws -> (Process, [String], FileHandle) {
    let bin = parleyBinary
    XCTAssertTrue(FileManager.default.isExecutableFile(atPath: bin), "build the parley product first: \(bin)")
    let base = Int.random(in: 20_000...60_000)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: bin)
    p.arguments = ["serve", "--listen", "127.0.0.1:0", "--stun", "127.0.0.1:0", "--loops", "2",
                   "--media-ports", "\(base)-\(base + 1)", "--data-dir", dataDir, "--log-level", "warn"]
        + (insecure ? ["--insecure"] : []) + extra
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    var lines: [String] = []
    var buffer = Data()
    let h = out.fileHandleForReading
    while !lines.contains(where: { $0.hasPrefix("listening http ") || $0.hasPrefix("listening https ") }) {
        let chunk = h.availableData
        if chunk.isEmpty { break } // EOF: the process died
        buffer.append(chunk)
        while let nl = buffer.firstIndex(of: 10) {
            lines.append(String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self))
            buffer.removeSubrange(buffer.startIndex...nl)
        }
    }
    return (p, lines, h)
}
