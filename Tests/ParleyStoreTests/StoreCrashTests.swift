import Foundation
import XCTest
import ParleyTestSupport
import ParleyStore

/// What a `StoreWriter` completion promised survives SIGKILL: a child
/// process (this test binary, running `testChildWritesAndAcknowledgesUntilKilled`)
/// writes as fast as it can and prints each write's id once its completion
/// ran; the parent kills it with SIGKILL mid-stream, reopens the database,
/// and finds every acknowledged id.
final class StoreCrashTests: XCTestCase {
    static let databaseVariable = "PARLEY_STORE_CRASH_DB"

    func testEveryAcknowledgedWriteSurvivesSIGKILL() throws {
        let dir = tempDir("crash")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/crash.db"

        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = ["ParleyStoreTests.StoreCrashTests/testChildWritesAndAcknowledgesUntilKilled"]
        child.environment = ProcessInfo.processInfo.environment.merging([Self.databaseVariable: path]) { $1 }
        let out = Pipe()
        child.standardOutput = out
        child.standardError = FileHandle.nullDevice
        try child.run()
        // Hang guard only: a child that stops writing is killed, and the count below fails.
        let reaped = Mutexed(false), pid = child.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + 120) { reaped.update { if !$0 { kill(pid, SIGKILL) } } }

        // Read acknowledgements until enough have arrived (or the child ends), then kill it mid-stream.
        var text = ""
        var acknowledged: [Int64] { text.split(separator: "\n").compactMap { $0.hasPrefix("acked ") ? Int64($0.dropFirst(6)) : nil } }
        let reader = out.fileHandleForReading
        while child.isRunning {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if text.components(separatedBy: "acked ").count > 3_000 { break }
        }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        reaped.update { $0 = true }
        text += String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)  // acks written before the kill

        XCTAssertEqual(child.terminationReason, .uncaughtSignal, "the child was killed, not finished:\n\(text.suffix(2000))")
        let acked = acknowledged
        XCTAssertGreaterThan(acked.count, 3_000, text.suffix(2000).description)

        // Reopening runs SQLite's recovery of the WAL; every acknowledged row is there.
        let db = try Database(path: path)
        let stored = Set(try db.rows("SELECT id FROM messages") { $0.int64(0) })
        let lost = acked.filter { !stored.contains($0) }
        XCTAssertEqual(lost.count, 0, "\(lost.count) of \(acked.count) acknowledged writes lost, among them \(lost.prefix(10))")
        XCTAssertGreaterThanOrEqual(stored.count, acked.count)
    }

    /// The child's half: only runs with `PARLEY_STORE_CRASH_DB` set.
    func testChildWritesAndAcknowledgesUntilKilled() throws {
        guard let path = ProcessInfo.processInfo.environment[Self.databaseVariable] else {
            throw XCTSkip("runs only as the child of testEveryAcknowledgedWriteSurvivesSIGKILL")
        }
        var config = StoreWriter.Config()
        config.capacity = 256
        let writer = try StoreWriter(path: path, config: config, migrations: [
            Migration("messages") { try $0.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT NOT NULL)") },
        ])
        // Hang guard: the parent kills us long before this many.
        for id in Int64(1)...1_000_000 {
            while true {
                do {
                    try writer.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (?, ?)", [.integer(id), .text("message \(id)")]) }) { result in
                        guard case .success = result else { return }
                        // Straight to the pipe with write(2): nothing buffered in this process when it dies.
                        let line = Array("acked \(id)\n".utf8)
                        _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
                    }
                    break
                } catch StoreError.queueFull {
                    usleep(100)
                }
            }
        }
        XCTFail("the parent should have killed this process")
    }
}
