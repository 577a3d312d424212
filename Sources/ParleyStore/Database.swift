import CSQLite

/// One SQLite connection to a database file.
///
/// A `Database` and its statements belong to one thread at a time: the
/// owner serializes access (a `Mutex` around it, or the one thread of a
/// `StoreWriter`). Opened read-write it is in WAL mode, so readers on other
/// connections (`Options.readOnly`) do not wait for a writer and see only
/// committed transactions.
public final class Database {
    /// `PRAGMA synchronous`: when a commit waits for the disk.
    public enum Synchronous: String, Sendable {
        /// No fsync: a commit survives the process dying (kill -9), not the machine.
        case off = "OFF"
        /// WAL: fsync at checkpoints only; a commit survives the process dying, and
        /// after power loss the database is consistent but may lose the last commits.
        case normal = "NORMAL"
        /// WAL: one fsync of the log per commit; a commit survives power loss.
        case full = "FULL"
    }

    public struct Options: Sendable {
        /// Open without write access (and without creating the file).
        public var readOnly = false
        public var synchronous = Synchronous.normal
        /// How long a statement waits for another connection's lock before `SQLITE_BUSY`.
        public var busyTimeoutMilliseconds: Int32 = 10_000
        public var foreignKeys = true
        public init(readOnly: Bool = false, synchronous: Synchronous = .normal) {
            self.readOnly = readOnly
            self.synchronous = synchronous
        }
    }

    let handle: OpaquePointer
    public let path: String
    private var statements: [String: Statement] = [:]

    /// SQLite's process-wide settings, made once before the first connection
    /// opens (`sqlite3_config` refuses once SQLite is initialized): no
    /// allocation statistics, so an allocation takes no global mutex.
    private static let configured: Void = { _ = parley_sqlite_disable_memstatus() }()

    /// Opens (creating unless read-only) the database at `path`.
    public init(path: String, options: Options = Options()) throws {
        _ = Self.configured
        var db: OpaquePointer?
        // NOMUTEX: the owner serializes access (see above), so SQLite's own lock is not needed.
        let flags = (options.readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let error = StoreError.sqlite(rc, db, "open \(path)")
            sqlite3_close_v2(db)
            throw error
        }
        sqlite3_extended_result_codes(db, 1)
        self.handle = db
        self.path = path
        sqlite3_busy_timeout(db, options.busyTimeoutMilliseconds)
        if !options.readOnly { try execute("PRAGMA journal_mode=WAL") }
        try execute("PRAGMA synchronous=\(options.synchronous.rawValue)")
        try execute("PRAGMA foreign_keys=\(options.foreignKeys ? "ON" : "OFF")")
        // Savepoint sub-journals (and sorts) in memory: on disk, a StoreWriter's savepoint per write spilled to a
        // temporary file past 64 KiB and then cost two pwrites per page it touched, more than the WAL itself.
        // A sub-journal holds only the pages of the one open savepoint (one write), so this stays small.
        try execute("PRAGMA temp_store=MEMORY")
    }

    deinit {
        statements.removeAll()  // finalized before the connection closes
        sqlite3_close_v2(handle)
    }

    /// Runs SQL text (one or more statements, no parameters, rows ignored):
    /// schema changes and pragmas.
    public func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        guard rc == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(message)
            throw StoreError.sqlite(code: sqlite3_extended_errcode(handle), message: text, context: sql)
        }
    }

    /// The prepared statement for `sql`, compiled on first use and cached
    /// for the connection's life (so `sql` is fixed text: values go in
    /// bindings). Finish with it (step to the end, or `rows`/`run`) before
    /// preparing the same SQL again; it must not outlive the `Database`.
    public func prepare(_ sql: String) throws -> Statement {
        if let cached = statements[sql] { return cached }
        let statement = try Statement(database: self, sql: sql)
        statements[sql] = statement
        return statement
    }

    /// Runs `sql` with `values`; returns the rows changed.
    @discardableResult
    public func run(_ sql: String, _ values: [SQLValue] = []) throws -> Int {
        try prepare(sql).run(values)
    }

    /// Runs `sql` with `values` and makes each row into a `T`.
    public func rows<T>(_ sql: String, _ values: [SQLValue] = [], _ row: (Statement) throws -> T) throws -> [T] {
        try prepare(sql).rows(values, row)
    }

    /// The rowid of the last row this connection inserted.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Rows inserted, updated or deleted by this connection's statements so far (`sqlite3_total_changes64`).
    public var totalChanges: Int64 { sqlite3_total_changes64(handle) }

    /// True while a transaction is open on this connection.
    public var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Runs `body` in a transaction: committed when it returns, rolled back
    /// when it throws. `BEGIN IMMEDIATE` takes the write lock at the start,
    /// so two connections never both read and then fail to write.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try run("BEGIN IMMEDIATE")
        let result: T
        do { result = try body() } catch {
            _ = try? run("ROLLBACK")
            throw error
        }
        do { try run("COMMIT") } catch {
            if isInTransaction { _ = try? run("ROLLBACK") }
            throw error
        }
        return result
    }

    /// Runs `body` inside the current transaction so that, when it throws,
    /// only its own changes are undone.
    public func savepoint<T>(_ body: () throws -> T) throws -> T {
        try run("SAVEPOINT parley")
        do {
            let result = try body()
            try run("RELEASE parley")
            return result
        } catch {
            _ = try? run("ROLLBACK TO parley")
            _ = try? run("RELEASE parley")
            throw error
        }
    }

    /// `PRAGMA user_version`: the schema version `migrate` keeps.
    public var userVersion: Int32 {
        get throws { try rows("PRAGMA user_version") { Int32($0.int64(0)) }.first ?? 0 }
    }
}
