import XCTest
import Foundation
import ParleyCore
@testable import ParleyTranscode

/// The worker replaces a job's output directory (the old one is removed).
/// Whatever wrote the job row, it must never do that outside DATA-DIR/hls.
final class OutputContainmentTests: XCTestCase {
    func testWorkerRefusesOutputsOutsideTheHLSDirectory() throws {
        let dir = Support.tempDir("contain")
        let victim = Support.tempDir("victim")
        defer { for d in [dir, victim] { try? FileManager.default.removeItem(at: d) } }
        let precious = victim.appendingPathComponent("precious.txt")
        try Data("keep me".utf8).write(to: precious)
        var c = Worker.Config()
        c.dataDir = dir.path
        c.once = true
        c.retryBase = 0
        c.pollInterval = 0.1
        let w = try Worker(config: c, log: Logger(label: "worker", level: .error))
        try FileManager.default.createSymbolicLink(atPath: w.hlsDir + "/link", withDestinationPath: victim.path)
        var o = TranscodeOptions(input: "", output: "")
        o.ladder = "234p:145k"
        o.preset = "ultrafast"
        var ids: [Int64] = []
        for out in [victim.path, w.hlsDir + "/../../" + victim.lastPathComponent, w.hlsDir + "/link", w.hlsDir + "/link/inner", "/"] {
            o.output = out
            ids.append(try w.queue.enqueue(input: Support.sample, options: o))
        }
        try w.run()
        for id in ids {
            let job = try XCTUnwrap(try w.queue.get(id))
            XCTAssertEqual(job.state, .failed, "job \(id) → \(job.options.output)")
            XCTAssertEqual(job.attempts, 1, "refused, not retried")
            XCTAssertTrue(job.error?.contains("refused") ?? false, job.error ?? "")
        }
        XCTAssertEqual(try String(contentsOf: precious, encoding: .utf8), "keep me")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: victim.path), ["precious.txt"])
        XCTAssertTrue(HLSFiles.isJobOutput(w.hlsDir + "/clip-1", hlsRoot: w.hlsDir))
        XCTAssertFalse(HLSFiles.isJobOutput(w.hlsDir, hlsRoot: w.hlsDir))
        XCTAssertFalse(HLSFiles.isJobOutput(w.hlsDir + "/.hidden", hlsRoot: w.hlsDir))
    }
}
