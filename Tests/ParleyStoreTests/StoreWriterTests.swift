import Foundation
import XCTest
import ParleyTestSupport
import ParleyCore
import ParleyStore

/// `StoreWriter`: group commit, completions after the commit, the queue bound.
final class StoreWriterTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDir("writer") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    static let schema = [Migration("messages") { try $0.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT NOT NULL)") }]

    func writer(capacity: Int = 10_000, maxBatch: Int = 1_000, commitDelay: Duration = .zero, reruns: Counter? = nil) throws -> StoreWriter {
        var config = StoreWriter.Config()
        config.capacity = capacity
        config.maxBatch = maxBatch
        config.commitDelay = commitDelay
        config.reruns = reruns
        return try StoreWriter(path: dir + "/w.db", config: config, migrations: Self.schema)
    }

    /// Holds the writer thread inside a write until released, so that what
    /// is submitted meanwhile is queued, whatever the machine's speed.
    final class Gate: @unchecked Sendable {
        let entered = DispatchSemaphore(value: 0), open = DispatchSemaphore(value: 0)
        func hold(_ w: StoreWriter) throws {
            try w.submit({ _ in self.entered.signal(); self.open.wait() }, completion: { _ in })
            entered.wait()
        }
    }

    func testConcurrentWritesShareCommitsAndEachCompletionComesAfterItsCommit() throws {
        let w = try writer()
        // Used on the writer thread (the completions), one at a time.
        let reader = Mutexed(try Database(path: w.path, options: Database.Options(readOnly: true)))
        let gate = Gate()
        try gate.hold(w)

        // 200 writes from 4 threads while the writer is busy: they queue.
        let n = 200
        let done = DispatchGroup()
        let visibleAtCompletion = Mutexed(0), failures = Mutexed<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in stride(from: t, to: n, by: 4) {
                done.enter()
                do {
                    try w.submit({ db in
                        try db.run("INSERT INTO messages(id, body) VALUES (?, ?)", [.integer(Int64(i)), .text("m\(i)")])
                        return Int64(i)
                    }, completion: { result in
                        // Committed means another connection sees it now.
                        let seen = reader.update { (try? $0.rows("SELECT count(*) FROM messages WHERE id = ?", [.integer(Int64(i))]) { $0.int64(0) }) ?? [] }
                        if case .success(Int64(i)) = result, seen == [1] { visibleAtCompletion.update { $0 += 1 } } else {
                            failures.update { $0.append("\(i): \(result) seen \(seen)") }
                        }
                        done.leave()
                    })
                } catch { failures.update { $0.append("submit \(i): \(error)") }; done.leave() }
            }
        }
        XCTAssertEqual(w.queued, n)
        gate.open.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)

        XCTAssertEqual(failures.value, [])
        XCTAssertEqual(visibleAtCompletion.value, n)
        // The gate's write, then all 200 in one transaction.
        XCTAssertEqual(w.statistics, StoreWriter.Statistics(commits: 2, writes: n + 1))
        w.close()
    }

    func testBatchesAreCappedAtMaxBatch() throws {
        let w = try writer(maxBatch: 16)
        let gate = Gate()
        try gate.hold(w)
        let done = DispatchGroup()
        for i in 0..<64 {
            done.enter()
            try w.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (?, 'x')", [.integer(Int64(i))]) }, completion: { _ in done.leave() })
        }
        gate.open.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(w.statistics, StoreWriter.Statistics(commits: 1 + 64 / 16, writes: 65))
        w.close()
    }

    func testAWriteThatThrowsIsUndoneAloneAndItsCallerGetsTheError() throws {
        let w = try writer()
        let gate = Gate()
        try gate.hold(w)
        let results = Mutexed<[Int: Bool]>([:])
        let done = DispatchGroup()
        for i in 1...3 {
            done.enter()
            try w.submit({ db in
                try db.run("INSERT INTO messages(id, body) VALUES (?, 'x')", [.integer(Int64(i * 10))])
                // The second also tries a duplicate id: its own first insert must go too.
                if i == 2 { try db.run("INSERT INTO messages(id, body) VALUES (10, 'dup')") }
            }, completion: { r in
                results.update { $0[i] = (try? r.get()) != nil }
                done.leave()
            })
        }
        gate.open.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(results.value, [1: true, 2: false, 3: true])
        w.close()
        let db = try Database(path: w.path)
        XCTAssertEqual(try db.rows("SELECT id FROM messages ORDER BY id") { $0.int64(0) }, [10, 30])
        // The second threw after its first insert: the batch ran again, each write in a savepoint.
        XCTAssertEqual(w.statistics, StoreWriter.Statistics(commits: 2, writes: 4, reruns: 1))
    }

    /// Runs writes 1...n in one batch (queued behind a gate); returns how
    /// many times each ran and whether each succeeded.
    func batch(_ w: StoreWriter, _ n: Int, _ write: @escaping @Sendable (Int, Database) throws -> Void) throws
        -> (runs: [Int: Int], results: [Int: Bool]) {
        let gate = Gate()
        try gate.hold(w)
        let runs = Mutexed<[Int: Int]>([:]), results = Mutexed<[Int: Bool]>([:])
        let done = DispatchGroup()
        for i in 1...n {
            done.enter()
            try w.submit({ db in
                runs.update { $0[i, default: 0] += 1 }
                try write(i, db)
            }, completion: { r in
                results.update { $0[i] = (try? r.get()) != nil }
                done.leave()
            })
        }
        gate.open.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        return (runs.value, results.value)
    }

    func testAWriteThatThrowsHavingChangedNothingIsNotRunAgain() throws {
        let w = try writer()
        let (runs, results) = try batch(w, 4) { i, db in
            switch i {
            case 2: throw StoreError.closed  // before touching anything
            case 3: try db.run("INSERT INTO messages(id, body) VALUES (10, 'dup')")  // its one statement fails: SQLite undoes it
            default: try db.run("INSERT INTO messages(id, body) VALUES (?, 'x')", [.integer(Int64(i * 10))])
            }
        }
        XCTAssertEqual(results, [1: true, 2: false, 3: false, 4: true])
        XCTAssertEqual(runs, [1: 1, 2: 1, 3: 1, 4: 1])
        XCTAssertEqual(w.statistics, StoreWriter.Statistics(commits: 2, writes: 5, reruns: 0))
        w.close()
        XCTAssertEqual(try Database(path: w.path).rows("SELECT id FROM messages ORDER BY id") { $0.int64(0) }, [10, 40])
    }

    func testARerunLeavesNothingHalfAppliedAndRunsEachWriteAgain() throws {
        let reruns = Counter()
        let w = try writer(reruns: reruns)
        let (runs, results) = try batch(w, 4) { i, db in
            try db.run("INSERT INTO messages(id, body) VALUES (?, 'x')", [.integer(Int64(i * 10))])
            try db.run("UPDATE messages SET body = 'y' WHERE id = ?", [.integer(Int64(i * 10))])
            if i == 2 { throw StoreError.closed }  // after two changes
        }
        XCTAssertEqual(results, [1: true, 2: false, 3: true, 4: true])
        // The first pass stopped at the second write and was rolled back; the rerun ran all four.
        XCTAssertEqual(runs, [1: 2, 2: 2, 3: 1, 4: 1])
        XCTAssertEqual(w.statistics, StoreWriter.Statistics(commits: 2, writes: 5, reruns: 1))
        XCTAssertEqual(reruns.current, 1, "the metric counts it too")
        w.close()
        let db = try Database(path: w.path)
        XCTAssertEqual(try db.rows("SELECT id, body FROM messages ORDER BY id") { "\($0.int64(0)) \($0.string(1) ?? "")" },
                       ["10 y", "30 y", "40 y"])
    }

    func testAFullQueueRefusesAtOnceAndTheQueuedWritesStillCommit() throws {
        let w = try writer(capacity: 4)
        let gate = Gate()
        try gate.hold(w)  // taken off the queue: the writer is running it
        let done = DispatchGroup()
        for i in 0..<4 {
            done.enter()
            try w.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (?, 'x')", [.integer(Int64(i))]) }, completion: { _ in done.leave() })
        }
        XCTAssertThrowsError(try w.submit({ _ in XCTFail("a refused write must never run") }, completion: { _ in XCTFail("nor complete") })) {
            XCTAssertEqual($0 as? StoreError, .queueFull(capacity: 4))
        }
        gate.open.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        // Room again once the writer took the batch.
        let again = DispatchSemaphore(value: 0)
        try w.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (99, 'x')") }, completion: { _ in again.signal() })
        XCTAssertEqual(again.wait(timeout: .now() + 60), .success)
        w.close()
        XCTAssertEqual(try Database(path: w.path).rows("SELECT count(*) FROM messages") { $0.int64(0) }, [5])
    }

    func testCloseCommitsWhatIsQueuedThenRefuses() throws {
        let w = try writer()
        let gate = Gate()
        try gate.hold(w)
        let completed = Mutexed(0)
        for i in 0..<10 {
            try w.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (?, 'x')", [.integer(Int64(i))]) },
                         completion: { r in if (try? r.get()) != nil { completed.update { $0 += 1 } } })
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { gate.open.signal() }
        w.close()  // returns once the writer thread has ended
        XCTAssertEqual(completed.value, 10)
        XCTAssertThrowsError(try w.submit({ _ in }, completion: { _ in })) { XCTAssertEqual($0 as? StoreError, .closed) }
        XCTAssertEqual(try Database(path: w.path).rows("SELECT count(*) FROM messages") { $0.int64(0) }, [10])
    }

    func testACommitDelayGathersWritesAndAFullBatchDoesNotWaitItOut() throws {
        // Writes come fast (the first right after the gate's): the writer waits (up to ten minutes) for more,
        // and the fifth fills the batch. (Had it not waited, the first would have committed alone: 3 commits.)
        let w = try writer(maxBatch: 5, commitDelay: .seconds(600))
        let gate = Gate()
        try gate.hold(w)
        let done = DispatchGroup()
        func insert(_ i: Int) throws {
            done.enter()
            try w.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (?, 'x')", [.integer(Int64(i))]) }, completion: { _ in done.leave() })
        }
        try insert(0)
        gate.open.signal()
        for i in 1..<5 { try insert(i) }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(w.statistics, StoreWriter.Statistics(commits: 2, writes: 6))
        w.close()
    }

    func testAWriteAfterAQuietSpellDoesNotWaitOutTheCommitDelay() throws {
        // No write came before this one (a quiet spell): waiting would gather nothing, it commits at once.
        let w = try writer(commitDelay: .seconds(600))
        let done = DispatchSemaphore(value: 0)
        try w.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (1, 'x')") }, completion: { _ in done.signal() })
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "committed without the ten minutes' wait")
        w.close()
    }

    func testCloseDoesNotWaitOutTheCommitDelay() throws {
        let w = try writer(commitDelay: .seconds(600))
        // Right after another write, so the writer waits for more.
        let gate = Gate()
        try gate.hold(w)
        let completed = Mutexed(0)
        try w.submit({ try $0.run("INSERT INTO messages(id, body) VALUES (1, 'x')") },
                     completion: { r in if (try? r.get()) != nil { completed.update { $0 += 1 } } })
        gate.open.signal()
        let closed = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { w.close(); closed.signal() }
        XCTAssertEqual(closed.wait(timeout: .now() + 60), .success, "close commits what waits at once")
        XCTAssertEqual(completed.value, 1)
        XCTAssertEqual(try Database(path: w.path).rows("SELECT count(*) FROM messages") { $0.int64(0) }, [1])
    }

    func testTheCheckpointerCopiesTheWALIntoTheDatabaseWithoutTheWriter() throws {
        var config = StoreWriter.Config()
        config.checkpointInterval = .milliseconds(20)
        let w = try StoreWriter(path: dir + "/c.db", config: config, migrations: Self.schema)
        let initial = (try? FileManager.default.attributesOfItem(atPath: w.path)[.size] as? Int) ?? 0
        // ~1 MB in the WAL: far below the writer's own checkpoint (maxWALPages), so only the checkpointer copies it.
        let done = DispatchSemaphore(value: 0)
        try w.submit({ db in
            for i in 0..<1000 { try db.run("INSERT INTO messages(id, body) VALUES (?, ?)", [.integer(Int64(i)), .text(String(repeating: "x", count: 1000))]) }
        }, completion: { _ in done.signal() })
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        let deadline = Date().addingTimeInterval(60)
        var size = initial
        while Date() < deadline {
            size = (try? FileManager.default.attributesOfItem(atPath: w.path)[.size] as? Int) ?? 0
            if size >= 1_000_000 { break }
            usleep(20_000)
        }
        XCTAssertGreaterThanOrEqual(size, 1_000_000, "chat.db holds the rows while the writer is open (was \(initial) bytes)")
        w.close()
        XCTAssertEqual(try Database(path: w.path).rows("SELECT count(*) FROM messages") { $0.int64(0) }, [1000])
    }
}
