import Foundation
import XCTest
import ParleyTestSupport
import ParleyStore

/// `Database.migrate`: versioned steps in one transaction.
final class MigrationTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDir("migrate") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let steps = [
        Migration("notes") { try $0.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)") },
        Migration("note authors") { try $0.execute("ALTER TABLE notes ADD COLUMN author TEXT") },
    ]

    func testAFreshDatabaseGetsEveryStepAndAReopenNone() throws {
        let path = dir + "/m.db"
        do {
            let db = try Database(path: path)
            XCTAssertEqual(try db.userVersion, 0)
            XCTAssertEqual(try db.migrate(steps), 2)
            XCTAssertEqual(try db.userVersion, 2)
            try db.run("INSERT INTO notes(body, author) VALUES ('hi', 'ann')")
        }
        let db = try Database(path: path)
        XCTAssertEqual(try db.migrate(steps), 0)
        XCTAssertEqual(try db.rows("SELECT body, author FROM notes") { [$0.string(0), $0.string(1)] }, [["hi", "ann"]])
    }

    func testAnOlderDatabaseGetsOnlyTheStepsItLacks() throws {
        let path = dir + "/m.db"
        do {
            let db = try Database(path: path)
            XCTAssertEqual(try db.migrate(Array(steps.prefix(1))), 1)
            try db.run("INSERT INTO notes(body) VALUES ('old')")
        }
        let db = try Database(path: path)
        XCTAssertEqual(try db.migrate(steps), 1)
        XCTAssertEqual(try db.userVersion, 2)
        XCTAssertEqual(try db.rows("SELECT body, author FROM notes") { [$0.string(0), $0.string(1)] }, [["old", nil]])
    }

    func testAFailingStepRollsBackTheWholeMigration() throws {
        let db = try Database(path: dir + "/m.db")
        let broken = steps + [Migration("broken") { try $0.execute("ALTER TABLE nowhere ADD COLUMN x") }]
        XCTAssertThrowsError(try db.migrate(broken)) { error in
            guard case .sqlite(_, let message, let context)? = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("nowhere"), message)
            XCTAssertTrue(context.hasPrefix("migration \"broken\""), context)
        }
        XCTAssertEqual(try db.userVersion, 0)
        XCTAssertEqual(try db.rows("SELECT count(*) FROM sqlite_master WHERE name = 'notes'") { $0.int64(0) }, [0],
                       "the steps before the broken one were undone too")
        XCTAssertEqual(try db.migrate(steps), 2, "and the good steps still apply")
    }

    func testADatabaseNewerThanTheBuildIsRefused() throws {
        let path = dir + "/m.db"
        try Database(path: path).migrate(steps)
        let db = try Database(path: path)
        XCTAssertThrowsError(try db.migrate(Array(steps.prefix(1)))) {
            XCTAssertEqual($0 as? StoreError, .schemaTooNew(path: path, version: 2, known: 1))
        }
    }

    func testConcurrentOpenersMigrateOnce() throws {
        let path = dir + "/m.db"
        let applied = Mutexed(0)
        let counting = [Migration("notes") { db in
            try db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            applied.update { $0 += 1 }
        }]
        _ = try Database(path: path)  // the file exists and is in WAL mode, as after any first open
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do { try Database(path: path).migrate(counting) } catch { XCTFail("\(error)") }
        }
        XCTAssertEqual(applied.value, 1)
        XCTAssertEqual(try Database(path: path).userVersion, 1)
    }
}
