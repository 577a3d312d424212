import CSQLite

/// A value bound to a statement parameter or read from a column: SQLite's
/// five storage classes.
public enum SQLValue: Sendable, Equatable {
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
    case null
}

/// A prepared statement. Get one from `Database.prepare` (cached per SQL
/// text, so the same statement object comes back each time); bind, step
/// through its rows, and read columns by index. Like its `Database`, it
/// belongs to one thread at a time.
public final class Statement {
    let handle: OpaquePointer
    /// The SQL text, for errors.
    public let sql: String
    private unowned let database: Database

    init(database: Database, sql: String) throws {
        var st: OpaquePointer?
        let rc = sqlite3_prepare_v3(database.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &st, nil)
        guard rc == SQLITE_OK, let st else {
            sqlite3_finalize(st)
            throw StoreError.sqlite(rc, database.handle, "prepare: \(sql)")
        }
        self.handle = st
        self.sql = sql
        self.database = database
    }

    deinit { sqlite3_finalize(handle) }

    /// Resets the statement and binds `values` to its parameters, in order
    /// (`?` is 1, the next 2, …); parameters not given are NULL.
    public func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(handle)
        if values.count < sqlite3_bind_parameter_count(handle) { sqlite3_clear_bindings(handle) }
        for (i, value) in values.enumerated() {
            let n = Int32(i + 1)
            let rc: Int32 = switch value {
            case .integer(let x): sqlite3_bind_int64(handle, n, x)
            case .real(let x): sqlite3_bind_double(handle, n, x)
            case .text(var s):
                // The string's own UTF-8, with its length (passing `s` as a C string copied it into a new array first).
                s.withUTF8 { u in
                    guard let p = u.baseAddress else { return sqlite3_bind_text(handle, n, "", 0, parley_sqlite_transient()) }
                    return p.withMemoryRebound(to: CChar.self, capacity: u.count) {
                        sqlite3_bind_text(handle, n, $0, Int32(u.count), parley_sqlite_transient())
                    }
                }
            case .blob(let b): b.withUnsafeBytes { sqlite3_bind_blob64(handle, n, $0.baseAddress, UInt64($0.count), parley_sqlite_transient()) }
            case .null: sqlite3_bind_null(handle, n)
            }
            guard rc == SQLITE_OK else { throw StoreError.sqlite(rc, database.handle, "bind \(n): \(sql)") }
        }
    }

    /// Runs the statement to its next row: true when there is one to read,
    /// false when it is done (and then reset, ready to run again).
    public func step() throws -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: sqlite3_reset(handle); return false
        case let rc:
            let error = StoreError.sqlite(rc, database.handle, "step: \(sql)")
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Binds `values` and runs the statement to the end; returns the rows
    /// changed (for INSERT, UPDATE and DELETE).
    @discardableResult
    public func run(_ values: [SQLValue] = []) throws -> Int {
        try bind(values)
        while try step() {}
        return Int(sqlite3_changes64(database.handle))
    }

    /// Binds `values`, runs the statement and makes each row into a `T`.
    public func rows<T>(_ values: [SQLValue] = [], _ row: (Statement) throws -> T) throws -> [T] {
        try bind(values)
        var out: [T] = []
        do {
            while try step() { out.append(try row(self)) }
        } catch {
            sqlite3_reset(handle)
            throw error
        }
        return out
    }

    // MARK: columns of the current row (index from 0)

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    /// The column as an integer (0 for NULL; a REAL is truncated).
    public func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    /// The column as a double (0 for NULL).
    public func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }

    /// The column as text; nil for NULL.
    public func string(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(handle, column) else { return nil }
        return String(cString: p)
    }

    /// The column's bytes; nil for NULL (an empty blob is `[]`).
    public func blob(_ column: Int32) -> [UInt8]? {
        if isNull(column) { return nil }
        let n = Int(sqlite3_column_bytes(handle, column))
        guard n > 0, let p = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    /// The column in its own storage class.
    public func value(_ column: Int32) -> SQLValue {
        switch sqlite3_column_type(handle, column) {
        case SQLITE_INTEGER: .integer(int64(column))
        case SQLITE_FLOAT: .real(double(column))
        case SQLITE_BLOB: .blob(blob(column) ?? [])
        case SQLITE_NULL: .null
        default: .text(string(column) ?? "")
        }
    }
}
