import CSQLite

/// Every error ParleyStore throws.
public enum StoreError: Error, Equatable, CustomStringConvertible {
    /// SQLite refused: its (extended) result code and message, and what we
    /// were doing (`open /path`, `prepare: SQL`, `step: SQL`, `COMMIT`).
    case sqlite(code: Int32, message: String, context: String)
    /// The database's schema is newer than the migrations this build knows.
    case schemaTooNew(path: String, version: Int32, known: Int32)
    /// The writer's queue holds `capacity` writes already; nothing was queued.
    case queueFull(capacity: Int)
    /// The writer was closed; nothing was queued.
    case closed

    /// The error SQLite reported last on `db` for a call that returned `code`.
    static func sqlite(_ code: Int32, _ db: OpaquePointer?, _ context: String) -> StoreError {
        let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(code))
        return .sqlite(code: db.map(sqlite3_extended_errcode) ?? code, message: message, context: context)
    }

    /// The primary result code (`SQLITE_BUSY`, `SQLITE_CONSTRAINT`, …) of a `.sqlite` error.
    public var resultCode: Int32? {
        if case .sqlite(let code, _, _) = self { return code & 0xff }
        return nil
    }

    public var description: String {
        switch self {
        case .sqlite(let code, let message, let context): "sqlite: \(message) (code \(code)) in \(context)"
        case .schemaTooNew(let path, let version, let known):
            "\(path) has schema version \(version), newer than this build knows (\(known)); refusing to use it"
        case .queueFull(let capacity): "the store's write queue is full (\(capacity) writes waiting)"
        case .closed: "the store's writer is closed"
        }
    }
}
