import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyStore

/// `Database` and `Statement` over real files.
final class DatabaseTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDir("store") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testTypedValuesRoundTripThroughAFile() throws {
        let path = dir + "/t.db"
        let values: [SQLValue] = [.integer(.min), .integer(.max), .integer(0), .real(-1.5e300), .real(0.1),
                                  .text(""), .text("héllo ☎ \u{1F600}"), .blob([]), .blob([0, 1, 0, 255]), .null]
        do {
            let db = try Database(path: path)
            try db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v)")
            try db.transaction {
                for (n, v) in values.enumerated() { try db.run("INSERT INTO t(n, v) VALUES (?, ?)", [.integer(Int64(n)), v]) }
            }
        }
        // A new connection reads what the first committed, in the same storage classes.
        let db = try Database(path: path, options: Database.Options(readOnly: true))
        XCTAssertEqual(try db.rows("SELECT v FROM t ORDER BY n") { $0.value(0) }, values)

        // The typed readers.
        let row = try db.prepare("SELECT v FROM t WHERE n = ?")
        func read<T>(_ n: Int, _ get: (Statement) -> T) throws -> T { try XCTUnwrap(try row.rows([.integer(Int64(n))], get).first) }
        XCTAssertEqual(try read(0) { $0.int64(0) }, .min)
        XCTAssertEqual(try read(1) { $0.int64(0) }, .max)
        XCTAssertEqual(try read(3) { $0.double(0) }, -1.5e300)
        XCTAssertEqual(try read(5) { $0.string(0) }, "")
        XCTAssertEqual(try read(6) { $0.string(0) }, "héllo ☎ \u{1F600}")
        XCTAssertEqual(try read(7) { $0.blob(0) }, [])
        XCTAssertEqual(try read(8) { $0.blob(0) }, [0, 1, 0, 255])
        XCTAssertEqual(try read(9) { $0.isNull(0) }, true)
        XCTAssertNil(try read(9) { $0.string(0) })
        XCTAssertNil(try read(9) { $0.blob(0) })
        XCTAssertEqual(try read(6) { $0.isNull(0) }, false)
    }

    func testStatementsAreCachedPerSQLText() throws {
        let db = try Database(path: dir + "/t.db")
        let a = try db.prepare("SELECT 1"), b = try db.prepare("SELECT 1"), c = try db.prepare("SELECT 2")
        XCTAssertTrue(a === b)
        XCTAssertFalse(a === c)
        // A cached statement runs again with new bindings.
        XCTAssertEqual(try db.rows("SELECT ? + 1", [.integer(1)]) { $0.int64(0) }, [2])
        XCTAssertEqual(try db.rows("SELECT ? + 1", [.integer(41)]) { $0.int64(0) }, [42])
    }

    func testOpenSetsWALSynchronousBusyTimeoutAndForeignKeys() throws {
        let db = try Database(path: dir + "/t.db", options: Database.Options(synchronous: .full))
        XCTAssertEqual(try db.rows("PRAGMA journal_mode") { $0.string(0) }, ["wal"])
        XCTAssertEqual(try db.rows("PRAGMA synchronous") { $0.int64(0) }, [2])  // FULL
        XCTAssertEqual(try db.rows("PRAGMA busy_timeout") { $0.int64(0) }, [10_000])
        XCTAssertEqual(try db.rows("PRAGMA foreign_keys") { $0.int64(0) }, [1])

        try db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (p INTEGER REFERENCES parent(id))")
        XCTAssertThrowsError(try db.run("INSERT INTO child(p) VALUES (7)")) {
            XCTAssertEqual(($0 as? StoreError)?.resultCode, 19, "SQLITE_CONSTRAINT: \($0)")
        }
    }

    func testATransactionThatThrowsLeavesNothingBehind() throws {
        struct Refused: Error {}
        let db = try Database(path: dir + "/t.db")
        try db.execute("CREATE TABLE t (x)")
        XCTAssertThrowsError(try db.transaction {
            try db.run("INSERT INTO t VALUES (1)")
            throw Refused()
        }) { XCTAssertTrue($0 is Refused) }
        XCTAssertFalse(db.isInTransaction)
        XCTAssertEqual(try db.rows("SELECT count(*) FROM t") { $0.int64(0) }, [0])

        try db.transaction {
            try db.run("INSERT INTO t VALUES (1)")
            // A savepoint that throws undoes only its own change.
            XCTAssertThrowsError(try db.savepoint { try db.run("INSERT INTO t VALUES (2)"); throw Refused() })
            try db.run("INSERT INTO t VALUES (3)")
        }
        XCTAssertEqual(try db.rows("SELECT x FROM t ORDER BY x") { $0.int64(0) }, [1, 3])
    }

    func testAReaderSeesOnlyCommittedWrites() throws {
        let writer = try Database(path: dir + "/t.db")
        try writer.execute("CREATE TABLE t (x)")
        let reader = try Database(path: dir + "/t.db", options: Database.Options(readOnly: true))
        try writer.run("BEGIN IMMEDIATE")
        try writer.run("INSERT INTO t VALUES (1)")
        XCTAssertEqual(try reader.rows("SELECT count(*) FROM t") { $0.int64(0) }, [0], "WAL: the reader does not wait and sees no uncommitted row")
        try writer.run("COMMIT")
        XCTAssertEqual(try reader.rows("SELECT count(*) FROM t") { $0.int64(0) }, [1])
        XCTAssertThrowsError(try reader.run("INSERT INTO t VALUES (2)")) {
            XCTAssertEqual(($0 as? StoreError)?.resultCode, 8, "SQLITE_READONLY: \($0)")
        }
    }

    func testErrorsCarrySQLitesMessageCodeAndWhatFailed() throws {
        let db = try Database(path: dir + "/t.db")
        XCTAssertThrowsError(try db.prepare("SELEKT 1")) { error in
            guard case .sqlite(let code, let message, let context)? = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(code, 1)  // SQLITE_ERROR
            XCTAssertTrue(message.contains("syntax error"), message)
            XCTAssertEqual(context, "prepare: SELEKT 1")
            XCTAssertTrue("\(error)".contains("syntax error"))
        }
        try db.execute("CREATE TABLE t (x UNIQUE)")
        try db.run("INSERT INTO t VALUES (1)")
        XCTAssertThrowsError(try db.run("INSERT INTO t VALUES (1)")) { error in
            guard case .sqlite(let code, let message, let context)? = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(code, 2067)  // SQLITE_CONSTRAINT_UNIQUE, the extended code
            XCTAssertEqual((error as? StoreError)?.resultCode, 19)
            XCTAssertTrue(message.contains("UNIQUE"), message)
            XCTAssertEqual(context, "step: INSERT INTO t VALUES (1)")
        }
        XCTAssertThrowsError(try Database(path: dir + "/no/such/dir/t.db")) { error in
            XCTAssertEqual((error as? StoreError)?.resultCode, 14, "SQLITE_CANTOPEN: \(error)")
            XCTAssertTrue("\(error)".contains(dir + "/no/such/dir/t.db"))
        }
    }
}
