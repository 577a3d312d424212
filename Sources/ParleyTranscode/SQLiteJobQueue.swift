import Foundation
import ParleyStore
import Synchronization

/// The `JobQueue` on this machine: the `jobs` and `upload_owners` tables in
/// DATA-DIR/parley.db (SQLite, WAL), shared between threads and between
/// processes (the worker daemon, `parley transcode --enqueue`, `parley
/// serve`'s `POST /jobs`). Each call is one statement, or one transaction,
/// on the queue's connection.
public final class SQLiteJobQueue: JobQueue {
    public let dataDir: String
    public var path: String { dataDir + "/parley.db" }
    private let database: Mutex<Database>

    private init(dataDir: String, database: consuming sending Database) {
        self.dataDir = dataDir
        self.database = Mutex(database)
    }

    /// Opens (creating if needed) DATA-DIR/parley.db and brings its tables up to date.
    public static func open(dataDir: String) throws -> SQLiteJobQueue {
        let dir = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let db = try Database(path: dir + "/parley.db")
        try db.migrate(schema)
        return SQLiteJobQueue(dataDir: dir, database: db)
    }

    /// The schema's history. Databases made before it was versioned (user
    /// version 0) have the jobs table, with or without the submission
    /// columns, and perhaps `upload_owners`: the first two steps bring any
    /// of those shapes to the same place.
    static let schema = [
        Migration("jobs") { db in
            try db.execute("""
                CREATE TABLE IF NOT EXISTS jobs (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  input TEXT NOT NULL,
                  options TEXT NOT NULL,
                  output TEXT,
                  state TEXT NOT NULL DEFAULT 'queued',
                  progress REAL NOT NULL DEFAULT 0,
                  attempts INTEGER NOT NULL DEFAULT 0,
                  max_attempts INTEGER NOT NULL DEFAULT 3,
                  error TEXT,
                  created REAL NOT NULL,
                  updated REAL NOT NULL,
                  not_before REAL NOT NULL DEFAULT 0);
                CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, not_before, id);
                """)
        },
        Migration("job submissions and upload owners") { db in
            let have = Set(try db.rows("PRAGMA table_info(jobs)") { $0.string(1) }.compactMap { $0 })
            for (name, type) in [("owner", "TEXT"), ("source", "TEXT"), ("asset", "TEXT"), ("public", "INTEGER")] where !have.contains(name) {
                try db.execute("ALTER TABLE jobs ADD COLUMN \(name) \(type)")
            }
            try db.execute("""
                CREATE INDEX IF NOT EXISTS jobs_asset ON jobs(asset, id);
                CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, id);
                CREATE TABLE IF NOT EXISTS upload_owners (id TEXT NOT NULL, owner TEXT NOT NULL, size INTEGER NOT NULL,
                                                          created REAL NOT NULL, PRIMARY KEY (id, owner));
                CREATE INDEX IF NOT EXISTS upload_owners_owner ON upload_owners(owner);
                """)
        },
        Migration("job kinds") { db in
            try db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'transcode'")
        },
    ]

    /// Runs `body` on the connection, one caller at a time.
    private func withDatabase<T: Sendable>(_ body: (Database) throws -> T) throws -> T {
        try database.withLock { db throws -> T in try body(db) }
    }

    private static let columns = "id, input, options, output, state, progress, attempts, max_attempts, error, created, updated, not_before, owner, source, asset, public, kind"

    /// A row of `columns`; nil when it cannot be read back (bad options JSON or state).
    private static func job(_ r: Statement) -> Job? {
        guard let input = r.string(1), let optionsJSON = r.string(2),
              let options = try? JSONDecoder().decode(TranscodeOptions.self, from: Data(optionsJSON.utf8)),
              let state = r.string(4).flatMap(Job.State.init(rawValue:)),
              let kind = Job.Kind(rawValue: r.string(16) ?? "transcode") else { return nil }
        var submission: Job.Submission?
        if let owner = r.string(12), let source = r.string(13), let asset = r.string(14) {
            submission = Job.Submission(owner: owner, source: source, asset: asset, isPublic: r.isNull(15) ? nil : r.int64(15) != 0)
        }
        return Job(id: r.int64(0), kind: kind, input: input, options: options, output: r.string(3), state: state, progress: r.double(5),
                   attempts: Int(r.int64(6)), maxAttempts: Int(r.int64(7)), error: r.string(8), created: r.double(9),
                   updated: r.double(10), notBefore: r.double(11), submission: submission)
    }

    private func jobs(_ sql: String, _ values: [SQLValue]) throws -> [Job] {
        try withDatabase { try $0.rows(sql, values, Self.job).compactMap { $0 } }
    }

    private func count(_ sql: String, _ values: [SQLValue] = []) throws -> Int {
        try withDatabase { Int(try $0.rows(sql, values) { $0.int64(0) }.first ?? 0) }
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    private static func json(_ options: TranscodeOptions) throws -> String {
        String(decoding: try JSONEncoder().encode(options), as: UTF8.self)
    }

    public func enqueue(input: String, options: TranscodeOptions, maxAttempts: Int) throws -> Int64 {
        var o = options
        o.input = input
        let json = try Self.json(o)
        let t = Self.now()
        let id = try withDatabase {
            try $0.rows("INSERT INTO jobs(input, options, output, state, max_attempts, created, updated) VALUES (?,?,?,'queued',?,?,?) RETURNING id",
                        [.text(input), .text(json), o.output.isEmpty ? .null : .text(o.output), .integer(Int64(maxAttempts)), .real(t), .real(t)]) {
                $0.int64(0)
            }.first
        }
        guard let id else { throw TranscodeError.failed("enqueue: no id") }
        return id
    }

    public func enqueue(input: String, options: TranscodeOptions, submission: Job.Submission, cap: Int, maxAttempts: Int) throws -> Int64? {
        var o = options
        o.input = input
        o.output = ""
        let json = try Self.json(o)
        let t = Self.now()
        let output = dataDir + "/hls/" + submission.asset
        let visibility: SQLValue = submission.isPublic.map { .integer($0 ? 1 : 0) } ?? .null
        return try withDatabase {
            try $0.rows("""
                INSERT INTO jobs(input, options, output, state, max_attempts, created, updated, owner, source, asset, public)
                SELECT ?,?,?,'queued',?,?,?,?,?,?,?
                WHERE (SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')) < ?
                RETURNING id
                """, [.text(input), .text(json), .text(output), .integer(Int64(maxAttempts)), .real(t), .real(t),
                      .text(submission.owner), .text(submission.source), .text(submission.asset), visibility, .integer(Int64(cap))]) {
                $0.int64(0)
            }.first
        }
    }

    public func submission(forAsset asset: String) throws -> Job.Submission? {
        try jobs("SELECT \(Self.columns) FROM jobs WHERE asset = ? ORDER BY id DESC LIMIT 1", [.text(asset)]).first?.submission
    }

    public func get(_ id: Int64) throws -> Job? {
        try jobs("SELECT \(Self.columns) FROM jobs WHERE id = ?", [.integer(id)]).first
    }

    public func list(state: Job.State?, owner: String?, limit: Int) throws -> [Job] {
        var conditions: [String] = [], values: [SQLValue] = []
        if let state { conditions.append("state = ?"); values.append(.text(state.rawValue)) }
        if let owner { conditions.append("owner = ?"); values.append(.text(owner)) }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ") + " "
        return try jobs("SELECT \(Self.columns) FROM jobs \(filter)ORDER BY id DESC LIMIT ?", values + [.integer(Int64(limit))])
    }

    public func activeCount(input: String, source: String) throws -> Int {
        try count("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running') AND (input = ? OR source = ?)", [.text(input), .text(source)])
    }

    public func enqueueRecordExport(recording id: String, maxAttempts: Int) throws -> Int64 {
        let json = try Self.json(TranscodeOptions(input: "", output: ""))
        let t = Self.now()
        let found = try withDatabase { db in
            try db.transaction { () throws -> Int64? in
                let active = try db.rows("SELECT id FROM jobs WHERE kind = 'record-export' AND input = ? AND state IN ('queued', 'running') LIMIT 1",
                                         [.text(id)]) { $0.int64(0) }
                if let existing = active.first { return existing }
                return try db.rows("""
                    INSERT INTO jobs(kind, input, options, state, max_attempts, created, updated)
                    VALUES ('record-export',?,?,'queued',?,?,?) RETURNING id
                    """, [.text(id), .text(json), .integer(Int64(maxAttempts)), .real(t), .real(t)]) { $0.int64(0) }.first
            }
        }
        guard let found else { throw TranscodeError.failed("enqueue: no id") }
        return found
    }

    public func claim() throws -> Job? {
        let t = Self.now()
        return try jobs("""
            UPDATE jobs SET state = 'running', attempts = attempts + 1, progress = 0, updated = ?
            WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND not_before <= ? ORDER BY id LIMIT 1)
            RETURNING \(Self.columns)
            """, [.real(t), .real(t)]).first
    }

    private func update(_ sql: String, _ values: [SQLValue]) throws {
        try withDatabase { _ = try $0.run(sql, values) }
    }

    public func setProgress(_ id: Int64, _ fraction: Double) throws {
        try update("UPDATE jobs SET progress = ?, updated = ? WHERE id = ? AND state = 'running'", [.real(fraction), .real(Self.now()), .integer(id)])
    }

    public func setOutput(_ id: Int64, _ output: String) throws {
        try update("UPDATE jobs SET output = ?, updated = ? WHERE id = ?", [.text(output), .real(Self.now()), .integer(id)])
    }

    public func finish(_ id: Int64, output: String) throws {
        try update("UPDATE jobs SET state = 'done', progress = 1, output = ?, error = NULL, updated = ? WHERE id = ?",
                   [.text(output), .real(Self.now()), .integer(id)])
    }

    public func fail(_ id: Int64, error: String, retry: Bool, retryBase: Double) throws -> Job.State {
        let t = Self.now()
        // One transaction: the attempts read and the state written belong together.
        return try withDatabase { db in
            try db.transaction {
                let attempts = try db.rows("SELECT attempts, max_attempts FROM jobs WHERE id = ?", [.integer(id)]) {
                    (done: Int($0.int64(0)), max: Int($0.int64(1)))
                }
                guard let attempts = attempts.first else { return .failed }
                if retry && attempts.done < attempts.max {
                    let delay = min(3600, retryBase * pow(2, Double(max(0, attempts.done - 1))))
                    try db.run("UPDATE jobs SET state = 'queued', error = ?, not_before = ?, updated = ? WHERE id = ?",
                               [.text(error), .real(t + delay), .real(t), .integer(id)])
                    return .queued
                }
                try db.run("UPDATE jobs SET state = 'failed', error = ?, updated = ? WHERE id = ?", [.text(error), .real(t), .integer(id)])
                return .failed
            }
        }
    }

    public func release(_ id: Int64) throws {
        try update("UPDATE jobs SET state = 'queued', attempts = max(0, attempts - 1), progress = 0, updated = ? WHERE id = ? AND state = 'running'",
                   [.real(Self.now()), .integer(id)])
    }

    public func requeueInterrupted() throws -> Int {
        try withDatabase { try $0.run("UPDATE jobs SET state = 'queued', progress = 0, updated = ? WHERE state = 'running'", [.real(Self.now())]) }
    }

    public func nextRunnableDelay() throws -> Double? {
        let earliest = try withDatabase { db -> Double? in
            try db.rows("SELECT min(not_before) FROM jobs WHERE state = 'queued'") { $0.isNull(0) ? nil : $0.double(0) }.first ?? nil
        }
        return earliest.map { max(0, $0 - Self.now()) }
    }

    // MARK: upload owners

    public func addUploadOwner(_ id: String, owner: String, size: Int) throws -> Bool {
        try withDatabase {
            try $0.run("INSERT OR IGNORE INTO upload_owners(id, owner, size, created) VALUES (?,?,?,?)",
                       [.text(id), .text(owner), .integer(Int64(size)), .real(Self.now())]) > 0
        }
    }

    public func uploadOwners(_ id: String) throws -> [String] {
        try withDatabase { try $0.rows("SELECT owner FROM upload_owners WHERE id = ? ORDER BY owner", [.text(id)]) { $0.string(0) ?? "" } }
    }

    public func removeUploadOwners(_ id: String, owner: String?) throws -> [String] {
        try withDatabase { db in
            try owner.map { try db.rows("DELETE FROM upload_owners WHERE id = ? AND owner = ? RETURNING owner", [.text(id), .text($0)]) { $0.string(0) ?? "" } }
                ?? db.rows("DELETE FROM upload_owners WHERE id = ? RETURNING owner", [.text(id)]) { $0.string(0) ?? "" }
        }
    }

    public func uploadOwnerships() throws -> [(id: String, owner: String, size: Int)] {
        let rows = try withDatabase { db in
            try db.rows("SELECT id, owner, size FROM upload_owners") { [$0.string(0) ?? "", $0.string(1) ?? "", String($0.int64(2))] }
        }
        return rows.map { (id: $0[0], owner: $0[1], size: Int($0[2]) ?? 0) }
    }
}
