import Foundation
import XCTest
import ParleyTestSupport
import ParleyCore
@testable import ParleyTranscode

final class JobQueueTests: XCTestCase {
    func testLifecycleRetryBackoffAndRequeue() throws {
        let dir = Support.tempDir("queue")
        defer { try? FileManager.default.removeItem(at: dir) }
        let q = try SQLiteJobQueue.open(dataDir: dir.path)
        var o = TranscodeOptions(input: "", output: "")
        o.ladder = "234p:145k"
        let a = try q.enqueue(input: "/media/a.mp4", options: o, maxAttempts: 2)
        let b = try q.enqueue(input: "/media/b.mp4", options: o)
        XCTAssertEqual(try q.get(a)?.state, .queued)
        XCTAssertEqual(try q.get(a)?.options.ladder, "234p:145k")
        XCTAssertEqual(try q.list().map(\.id), [b, a])

        // A second connection (another process in real life) never takes the same job.
        let q2 = try SQLiteJobQueue.open(dataDir: dir.path)
        let j1 = try XCTUnwrap(try q.claim())
        let j2 = try XCTUnwrap(try q2.claim())
        XCTAssertEqual([j1.id, j2.id], [a, b])
        XCTAssertEqual(j1.state, .running)
        XCTAssertEqual(j1.attempts, 1)
        XCTAssertNil(try q.claim(), "nothing left")

        // Failure with attempts left: back to queued, not before the backoff.
        XCTAssertEqual(try q.fail(a, error: "boom", retryBase: 60), .queued)
        let retried = try XCTUnwrap(try q.get(a))
        XCTAssertEqual(retried.state, .queued)
        XCTAssertEqual(retried.error, "boom")
        XCTAssertGreaterThan(retried.notBefore, Date().timeIntervalSince1970 + 50)
        XCTAssertNil(try q.claim(), "backing off")
        XCTAssertGreaterThan(try XCTUnwrap(try q.nextRunnableDelay()), 50)

        // Last attempt fails for good.
        XCTAssertEqual(try q.fail(a, error: "again", retryBase: 0), .queued)
        _ = try XCTUnwrap(try q.claim())
        XCTAssertEqual(try q.get(a)?.attempts, 2)
        XCTAssertEqual(try q.fail(a, error: "final", retryBase: 0), .failed)
        XCTAssertEqual(try q.get(a)?.state, .failed)

        // A job left running (its worker died) is re-queued.
        try q.setProgress(b, 0.4)
        XCTAssertEqual(try q.get(b)?.progress ?? 0, 0.4, accuracy: 1e-9)
        XCTAssertEqual(try q.requeueInterrupted(), 1)
        XCTAssertEqual(try q.get(b)?.state, .queued)
        let again = try XCTUnwrap(try q.claim())
        XCTAssertEqual(again.id, b)
        XCTAssertEqual(again.attempts, 2)
        try q.finish(b, output: "/out/b")
        XCTAssertEqual(try q.get(b)?.state, .done)
        XCTAssertEqual(try q.get(b)?.output, "/out/b")
    }

    /// `POST /jobs` bodies: only `input` is required; bad fields are usage errors.
    func testJobOptionsFromJSON() throws {
        let o = try JSONDecoder().decode(TranscodeOptions.self, from: Data(#"{"input":"/m/a.mp4","ladder":"720p:3000k","format":"ts"}"#.utf8))
        XCTAssertEqual(o.input, "/m/a.mp4")
        XCTAssertEqual(o.format, .ts)
        XCTAssertEqual(o.segmentSeconds, 4)
        XCTAssertEqual(o.preset, "veryfast")
        XCTAssertNoThrow(try o.validate())
        for bad in [#"{"input":"a","ladder":"x"}"#, #"{"input":"a","segment_seconds":0}"#, #"{"input":"a","preset":"warp"}"#, #"{"input":""}"#] {
            let b = try JSONDecoder().decode(TranscodeOptions.self, from: Data(bad.utf8))
            XCTAssertThrowsError(try b.validate(), bad)
        }
        XCTAssertThrowsError(try JSONDecoder().decode(TranscodeOptions.self, from: Data(#"{"ladder":"720p:3000k"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(TranscodeOptions.self, from: Data(#"{"input":"a","format":"webm"}"#.utf8)))
    }

    /// In-process worker with `once`: a queued job and a spooled bad file.
    func testWorkerRunsQueueAndSpool() throws {
        let dir = Support.tempDir("worker")
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = Worker.Config()
        c.dataDir = dir.path
        c.once = true
        c.retryBase = 0
        c.maxAttempts = 2
        c.pollInterval = 0.1
        c.spoolOptions.preset = "ultrafast"
        let w = try Worker(config: c, log: Logger(label: "worker", level: .error))
        var o = TranscodeOptions(input: "", output: "")
        o.ladder = "234p:145k"
        o.preset = "superfast"
        let good = try w.queue.enqueue(input: Support.sample, options: o)
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: w.incomingDir + "/junk.mp4"))
        try w.run()
        let done = try XCTUnwrap(try w.queue.get(good))
        XCTAssertEqual(done.state, .done)
        XCTAssertEqual(done.progress, 1)
        let out = try XCTUnwrap(done.output)
        XCTAssertTrue(out.hasPrefix(w.hlsDir + "/sample-720p-12s-"), out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/master.m3u8"))
        let junk = try XCTUnwrap(try w.queue.list().first { $0.input.hasSuffix("junk.mp4") })
        XCTAssertEqual(junk.state, .failed)
        XCTAssertEqual(junk.attempts, 1, "bad input is not retried")
        XCTAssertTrue(junk.error?.contains("not a media file") ?? false)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: w.incomingDir), [])
        // Only one worker per data directory: `w` still holds the lock.
        XCTAssertThrowsError(try Worker(config: c, log: Logger(label: "worker", level: .error)).run()) { XCTAssertTrue("\($0)".contains("another worker"), "\($0)") }
        XCTAssertEqual(try runTool(parleyBinary, ["worker", "--data-dir", dir.path, "--concurrency", "0"]).status, 2)
    }

    /// The worker goes through the `JobQueue` it is given for every job
    /// (here one kept in another directory, as a queue shared by several
    /// machines would be); its data directory gets only the ladders.
    func testWorkerRunsJobsFromTheQueueItIsGiven() throws {
        let dir = Support.tempDir("worker-queue")
        defer { try? FileManager.default.removeItem(at: dir) }
        let queue = try SQLiteJobQueue.open(dataDir: dir.path + "/shared")
        var o = TranscodeOptions(input: "", output: "")
        o.ladder = "234p:145k"
        o.preset = "ultrafast"
        let id = try queue.enqueue(input: Support.sample, options: o)
        var c = Worker.Config()
        c.dataDir = dir.path + "/node"
        c.once = true
        c.pollInterval = 0.1
        let w = try Worker(config: c, queue: queue, log: Logger(label: "worker", level: .error))
        try w.run()
        let done = try XCTUnwrap(try queue.get(id))
        XCTAssertEqual(done.state, .done)
        XCTAssertTrue(done.output?.hasPrefix(dir.path + "/node/hls/") ?? false, "\(done.output ?? "nil")")
        XCTAssertTrue(FileManager.default.fileExists(atPath: (done.output ?? "") + "/master.m3u8"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path + "/node/parley.db"), "the worker opened no queue of its own")
    }
}

/// Which failures the worker retries: bad input never (it fails at once,
/// with the reason), a transient fault (here a full disk) up to the limit.
final class WorkerRetryTests: XCTestCase {
    func testRetriesOnlyTransientFailures() throws {
        let dir = Support.tempDir("retry")
        defer { try? FileManager.default.removeItem(at: dir) }
        // DATA-DIR/hls on a 64 KiB tmpfs: a 12 s ladder does not fit (ENOSPC).
        let hls = dir.appendingPathComponent("hls")
        try FileManager.default.createDirectory(at: hls, withIntermediateDirectories: true)
        let mount = try Support.run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", hls.path])
        try XCTSkipIf(mount.status != 0, "cannot mount a tmpfs here (needs root): \(mount.stderr)")
        defer { _ = try? Support.run("umount", [hls.path]) }

        let audioOnly = dir.appendingPathComponent("voice.m4a").path
        let gen = try Support.run("ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", audioOnly])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let junk = dir.appendingPathComponent("junk.mp4").path
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: junk))

        var c = Worker.Config()
        c.dataDir = dir.path
        c.once = true
        c.retryBase = 0
        c.maxAttempts = 3
        c.pollInterval = 0.1
        let w = try Worker(config: c, log: Logger(label: "worker", level: .error))
        var o = TranscodeOptions(input: "", output: "")
        o.ladder = "234p:145k"
        o.preset = "ultrafast"
        let permanent = [(try w.queue.enqueue(input: junk, options: o, maxAttempts: 3), "not a media file"),
                         (try w.queue.enqueue(input: audioOnly, options: o, maxAttempts: 3), "no video stream")]
        let full = try w.queue.enqueue(input: Support.sample, options: o, maxAttempts: 3)
        try w.run()

        for (id, reason) in permanent {
            let j = try XCTUnwrap(try w.queue.get(id))
            XCTAssertEqual(j.state, .failed)
            XCTAssertEqual(j.attempts, 1, "\(reason): failed at once, not retried")
            XCTAssertTrue(j.error?.contains(reason) ?? false, j.error ?? "no error recorded")
            XCTAssertTrue(j.error?.hasPrefix("permanent:") ?? false, j.error ?? "")
        }
        let j = try XCTUnwrap(try w.queue.get(full))
        XCTAssertEqual(j.state, .failed)
        XCTAssertEqual(j.attempts, 3, "a full disk is retried up to max attempts")
        XCTAssertTrue(j.error?.contains("No space left on device") ?? false, j.error ?? "no error recorded")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: hls.path), [], "no partial ladders left")
    }
}

/// A real `parley worker` process killed with SIGKILL mid-job: after a
/// restart the job is re-queued and finished.
final class WorkerKillTests: XCTestCase {
    static func parleyBinary() -> String? {
        if let p = ProcessInfo.processInfo.environment["PARLEY_BIN"], FileManager.default.isExecutableFile(atPath: p) { return p }
        let p = Support.repoRoot.appendingPathComponent(".build/debug/parley").path
        return FileManager.default.isExecutableFile(atPath: p) ? p : nil
    }

    func testJobKilledMidwayIsFinishedAfterRestart() throws {
        guard let bin = Self.parleyBinary() else { throw XCTSkip("no parley binary (set PARLEY_BIN or build the parley product)") }
        let help = try Support.run(bin, ["worker", "--help"])
        try XCTSkipIf(help.status != 0, "this parley binary has no `worker` subcommand yet")

        let dir = Support.tempDir("workerkill")
        defer { try? FileManager.default.removeItem(at: dir) }
        // 40 s of 640x360: long enough to be killed mid-way.
        let input = dir.appendingPathComponent("long.mp4").path
        let gen = try Support.run("ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=30:d=40",
                                             "-f", "lavfi", "-i", "sine=d=40", "-c:v", "libx264", "-preset", "ultrafast",
                                             "-c:a", "aac", "-shortest", input])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let q = try SQLiteJobQueue.open(dataDir: dir.path + "/var")
        var o = TranscodeOptions(input: "", output: "")
        o.ladder = "360p:365k,234p:145k"
        let id = try q.enqueue(input: input, options: o)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["worker", "--data-dir", dir.path + "/var", "--poll", "0.1"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait until the job is running and has made progress (hang guard 120 s).
        let deadline = Date().addingTimeInterval(120)
        var seen: Job?
        while Date() < deadline {
            seen = try q.get(id)
            if seen?.state == .running, (seen?.progress ?? 0) > 0.05 { break }
            if seen?.state == .done { break }
            usleep(50_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        let killed = try XCTUnwrap(try q.get(id))
        XCTAssertEqual(killed.state, .running, "killed mid-way: still marked running (progress \(killed.progress))")
        XCTAssertLessThan(killed.progress, 1)
        let out = try XCTUnwrap(killed.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/master.m3u8"), "no complete-looking ladder")

        // Restart: the job is re-queued and finished; the worker exits when idle.
        let r = try Support.run(bin, ["worker", "--data-dir", dir.path + "/var", "--poll", "0.1", "--once"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("re-queued"), r.stderr)
        let finished = try XCTUnwrap(try q.get(id))
        XCTAssertEqual(finished.state, .done, finished.error ?? "")
        XCTAssertEqual(finished.attempts, 2)
        XCTAssertEqual(finished.output, out)
        let probe = try Support.run("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", out + "/360p-365k/index.m3u8"])
        XCTAssertEqual(Double(probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, 40, accuracy: 0.1)
        let hls = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/var/hls")
        XCTAssertEqual(hls, [(out as NSString).lastPathComponent], "partial output of the killed run removed")
    }
}
