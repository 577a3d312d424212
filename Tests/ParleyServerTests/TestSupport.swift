import XCTest
import Foundation
import ParleyCore
import ParleyIO
@testable import ParleyServer

/// Runs an external program (curl, python3, ffmpeg) and returns its exit
/// status and output; the timeout only guards against hangs.
@discardableResult
func runTool(_ exe: String, _ args: [String], timeout: Double = 60, stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe.hasPrefix("/") ? exe : "/usr/bin/env")
    p.arguments = exe.hasPrefix("/") ? args : [exe] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let inPipe = Pipe()
    p.standardInput = inPipe
    try p.run()
    if let stdin { inPipe.fileHandleForWriting.write(Data(stdin.utf8)) }
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
    return (p.terminationStatus, String(decoding: outData.get(), as: UTF8.self), String(decoding: errData.get(), as: UTF8.self))
}

final class LockedData: @unchecked Sendable {
    private let l = NSLock()
    private var d = Data()
    func set(_ x: Data) { l.withLock { d = x } }
    func get() -> Data { l.withLock { d } }
}

func tempDir(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "parley-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let quietLogger = Logger(label: "test", level: .error)
