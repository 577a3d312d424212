import Foundation
import CSQLite

/// A transcoding job as the queue records it.
public struct Job: Sendable, Codable {
    public enum State: String, Sendable, Codable { case queued, running, done, failed }
    public var id: Int64
    public var input: String
    public var options: TranscodeOptions
    /// Where the finished ladder is (set when done, or chosen at enqueue).
    public var output: String?
    public var state: State
    /// 0...1 while running.
    public var progress: Double
    public var attempts: Int
    public var maxAttempts: Int
    public var error: String?
    /// Unix seconds.
    public var created: Double
    public var updated: Double
    /// Not claimed before this time (retry backoff).
    public var notBefore: Double
    /// Set for jobs submitted over HTTP (`POST /jobs`); nil for the command
    /// line and the spool.
    public var submission: JobQueue.Submission?
}

/// The transcoding job queue: a `jobs` table in DATA-DIR/parley.db (SQLite,
/// WAL). Safe to share between threads and between processes (the worker
/// daemon, `parley transcode --enqueue`, `parley serve`'s `POST /jobs`).
public final class JobQueue: @unchecked Sendable {
    public struct QueueError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Who submitted a job over HTTP and how they named it: what the job API
    /// shows instead of server paths.
    public struct Submission: Sendable, Codable, Equatable {
        /// The token subject that submitted it.
        public var owner: String
        /// The input as the client named it: `upload:SHA256` or `input:RELATIVE-NAME`.
        public var source: String
        /// The ladder's directory name under DATA-DIR/hls (chosen by the server).
        public var asset: String
        /// Served without a token; nil: the server's `hls-public-default`.
        public var isPublic: Bool?

        public init(owner: String, source: String, asset: String, isPublic: Bool?) {
            self.owner = owner
            self.source = source
            self.asset = asset
            self.isPublic = isPublic
        }
    }

    private var db: OpaquePointer?
    private let lock = NSLock()
    public let dataDir: String
    public var path: String { dataDir + "/parley.db" }

    private init(dataDir: String) { self.dataDir = dataDir }

    deinit { sqlite3_close_v2(db) }

    /// Opens (creating if needed) DATA-DIR/parley.db and the `jobs` table.
    public static func open(dataDir: String) throws -> JobQueue {
        let dir = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let q = JobQueue(dataDir: dir)
        let rc = sqlite3_open_v2(q.path, &q.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil)
        guard rc == SQLITE_OK else { throw QueueError(description: "cannot open \(q.path): \(String(cString: sqlite3_errstr(rc)))") }
        sqlite3_busy_timeout(q.db, 10_000)
        try q.exec("PRAGMA journal_mode=WAL")
        try q.exec("PRAGMA synchronous=NORMAL")
        try q.exec("""
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
              not_before REAL NOT NULL DEFAULT 0)
            """)
        try q.exec("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, not_before, id)")
        try q.addSubmissionColumns()
        // Who uploaded what (PUT /uploads): one row per upload id and subject.
        try q.exec("CREATE TABLE IF NOT EXISTS upload_owners (id TEXT NOT NULL, owner TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL, PRIMARY KEY (id, owner))")
        try q.exec("CREATE INDEX IF NOT EXISTS upload_owners_owner ON upload_owners(owner)")
        return q
    }

    /// The columns of `Submission` (added to databases made before them).
    private func addSubmissionColumns() throws {
        func columns() throws -> Set<String> {
            Set(try query("PRAGMA table_info(jobs)").compactMap { r -> String? in
                if case .text(let name) = r[1] { return name }
                return nil
            })
        }
        let have = try columns()
        for (name, type) in [("owner", "TEXT"), ("source", "TEXT"), ("asset", "TEXT"), ("public", "INTEGER")] where !have.contains(name) {
            do { try exec("ALTER TABLE jobs ADD COLUMN \(name) \(type)") } catch {
                // Another process may have added it since we looked.
                if !(try columns().contains(name)) { throw error }
            }
        }
        try exec("CREATE INDEX IF NOT EXISTS jobs_asset ON jobs(asset, id)")
        try exec("CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, id)")
    }

    private func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &err) != SQLITE_OK {
            let m = err.map { String(cString: $0) } ?? "error"
            sqlite3_free(err)
            throw QueueError(description: "sqlite: \(m)")
        }
    }

    enum Value: Equatable { case int(Int64), real(Double), text(String), null }

    /// Runs one statement with bound values; returns the rows.
    private func query(_ sql: String, _ values: [Value] = []) throws -> [[Value]] {
        lock.lock(); defer { lock.unlock() }
        var st: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &st, nil) == SQLITE_OK else {
            throw QueueError(description: "sqlite: \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(st) }
        for (i, v) in values.enumerated() {
            let n = Int32(i + 1)
            switch v {
            case .int(let x): sqlite3_bind_int64(st, n, x)
            case .real(let x): sqlite3_bind_double(st, n, x)
            case .text(let s): sqlite3_bind_text(st, n, s, -1, parley_sqlite_transient())
            case .null: sqlite3_bind_null(st, n)
            }
        }
        var rows: [[Value]] = []
        while true {
            let rc = sqlite3_step(st)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw QueueError(description: "sqlite: \(String(cString: sqlite3_errmsg(db)))") }
            var row: [Value] = []
            for c in 0..<sqlite3_column_count(st) {
                switch sqlite3_column_type(st, c) {
                case SQLITE_INTEGER: row.append(.int(sqlite3_column_int64(st, c)))
                case SQLITE_FLOAT: row.append(.real(sqlite3_column_double(st, c)))
                case SQLITE_NULL: row.append(.null)
                default: row.append(.text(String(cString: sqlite3_column_text(st, c))))
                }
            }
            rows.append(row)
        }
        return rows
    }

    private static let columns = "id, input, options, output, state, progress, attempts, max_attempts, error, created, updated, not_before, owner, source, asset, public"

    private func job(_ r: [Value]) -> Job? {
        func i(_ k: Int) -> Int64 { if case .int(let x) = r[k] { return x }; if case .real(let x) = r[k] { return Int64(x) }; return 0 }
        func d(_ k: Int) -> Double { if case .real(let x) = r[k] { return x }; if case .int(let x) = r[k] { return Double(x) }; return 0 }
        func s(_ k: Int) -> String? { if case .text(let x) = r[k] { return x }; return nil }
        guard let input = s(1), let optJSON = s(2),
              let opts = try? JSONDecoder().decode(TranscodeOptions.self, from: Data(optJSON.utf8)),
              let state = s(4).flatMap(Job.State.init(rawValue:)) else { return nil }
        var submission: Submission?
        if let owner = s(12), let source = s(13), let asset = s(14) {
            submission = Submission(owner: owner, source: source, asset: asset, isPublic: r[15] == .null ? nil : i(15) != 0)
        }
        return Job(id: i(0), input: input, options: opts, output: s(3), state: state, progress: d(5),
                   attempts: Int(i(6)), maxAttempts: Int(i(7)), error: s(8), created: d(9), updated: d(10), notBefore: d(11),
                   submission: submission)
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Queues a job; returns its id. `options.output` empty = the worker picks DATA-DIR/hls/ASSET.
    @discardableResult
    public func enqueue(input: String, options: TranscodeOptions, maxAttempts: Int = 3) throws -> Int64 {
        var o = options
        o.input = input
        let json = String(decoding: try JSONEncoder().encode(o), as: UTF8.self)
        let t = JobQueue.now()
        let rows = try query("INSERT INTO jobs(input, options, output, state, max_attempts, created, updated) VALUES (?,?,?,'queued',?,?,?) RETURNING id",
                             [.text(input), .text(json), o.output.isEmpty ? .null : .text(o.output), .int(Int64(maxAttempts)), .real(t), .real(t)])
        guard case .int(let id) = rows.first?.first else { throw QueueError(description: "enqueue: no id") }
        return id
    }

    /// Queues a job submitted over HTTP, unless `cap` jobs are already queued
    /// or running (checked and inserted in one statement, so concurrent
    /// submissions cannot overshoot). The output is DATA-DIR/hls/ASSET.
    /// Returns the id, or nil when the queue is full.
    public func enqueue(input: String, options: TranscodeOptions, submission: Submission, cap: Int,
                        maxAttempts: Int = 3) throws -> Int64? {
        var o = options
        o.input = input
        o.output = ""
        let json = String(decoding: try JSONEncoder().encode(o), as: UTF8.self)
        let t = JobQueue.now()
        let output = dataDir + "/hls/" + submission.asset
        let visibility: Value = submission.isPublic.map { .int($0 ? 1 : 0) } ?? .null
        let rows = try query("""
            INSERT INTO jobs(input, options, output, state, max_attempts, created, updated, owner, source, asset, public)
            SELECT ?,?,?,'queued',?,?,?,?,?,?,?
            WHERE (SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')) < ?
            RETURNING id
            """, [.text(input), .text(json), .text(output), .int(Int64(maxAttempts)), .real(t), .real(t),
                  .text(submission.owner), .text(submission.source), .text(submission.asset), visibility, .int(Int64(cap))])
        guard let first = rows.first else { return nil }
        guard case .int(let id) = first.first else { throw QueueError(description: "enqueue: no id") }
        return id
    }

    /// Jobs queued or running.
    public func activeCount() throws -> Int {
        guard case .int(let n) = try query("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").first?.first else { return 0 }
        return Int(n)
    }

    /// Who may see the ladder in DATA-DIR/hls/ASSET: the newest job that wrote
    /// it (nil when no HTTP job did: the command line or the spool made it).
    public func submission(forAsset asset: String) throws -> Submission? {
        try query("SELECT \(JobQueue.columns) FROM jobs WHERE asset = ? ORDER BY id DESC LIMIT 1", [.text(asset)])
            .first.flatMap(job)?.submission
    }

    public func get(_ id: Int64) throws -> Job? {
        try query("SELECT \(JobQueue.columns) FROM jobs WHERE id = ?", [.int(id)]).first.flatMap(job)
    }

    /// Jobs, newest first; `state` and `owner` (the submitting token's subject) filter.
    public func list(state: Job.State? = nil, owner: String? = nil, limit: Int = 100) throws -> [Job] {
        var conditions: [String] = [], values: [Value] = []
        if let state { conditions.append("state = ?"); values.append(.text(state.rawValue)) }
        if let owner { conditions.append("owner = ?"); values.append(.text(owner)) }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ") + " "
        return try query("SELECT \(JobQueue.columns) FROM jobs \(filter)ORDER BY id DESC LIMIT ?",
                         values + [.int(Int64(limit))]).compactMap(job)
    }

    /// Takes the oldest runnable queued job and marks it running (atomic,
    /// so two workers never take the same job).
    public func claim() throws -> Job? {
        let t = JobQueue.now()
        return try query("""
            UPDATE jobs SET state = 'running', attempts = attempts + 1, progress = 0, updated = ?
            WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND not_before <= ? ORDER BY id LIMIT 1)
            RETURNING \(JobQueue.columns)
            """, [.real(t), .real(t)]).first.flatMap(job)
    }

    public func setProgress(_ id: Int64, _ fraction: Double) throws {
        _ = try query("UPDATE jobs SET progress = ?, updated = ? WHERE id = ? AND state = 'running'",
                      [.real(fraction), .real(JobQueue.now()), .int(id)])
    }

    public func setOutput(_ id: Int64, _ output: String) throws {
        _ = try query("UPDATE jobs SET output = ?, updated = ? WHERE id = ?", [.text(output), .real(JobQueue.now()), .int(id)])
    }

    public func finish(_ id: Int64, output: String) throws {
        _ = try query("UPDATE jobs SET state = 'done', progress = 1, output = ?, error = NULL, updated = ? WHERE id = ?",
                      [.text(output), .real(JobQueue.now()), .int(id)])
    }

    /// Records a failure: back to `queued` after a backoff of
    /// `retryBase × 2^(attempts-1)` seconds while attempts remain, else `failed`.
    /// Returns the new state.
    @discardableResult
    public func fail(_ id: Int64, error: String, retry: Bool = true, retryBase: Double = 2) throws -> Job.State {
        guard let j = try get(id) else { return .failed }
        let t = JobQueue.now()
        if retry && j.attempts < j.maxAttempts {
            let delay = min(3600, retryBase * pow(2, Double(max(0, j.attempts - 1))))
            _ = try query("UPDATE jobs SET state = 'queued', error = ?, not_before = ?, updated = ? WHERE id = ?",
                          [.text(error), .real(t + delay), .real(t), .int(id)])
            return .queued
        }
        _ = try query("UPDATE jobs SET state = 'failed', error = ?, updated = ? WHERE id = ?",
                      [.text(error), .real(t), .int(id)])
        return .failed
    }

    /// Puts a running job back without counting the attempt (clean shutdown).
    public func release(_ id: Int64) throws {
        _ = try query("UPDATE jobs SET state = 'queued', attempts = max(0, attempts - 1), progress = 0, updated = ? WHERE id = ? AND state = 'running'",
                      [.real(JobQueue.now()), .int(id)])
    }

    /// Re-queues jobs left `running` by a worker that died; returns how many.
    @discardableResult
    public func requeueInterrupted() throws -> Int {
        try query("UPDATE jobs SET state = 'queued', progress = 0, updated = ? WHERE state = 'running' RETURNING id",
                  [.real(JobQueue.now())]).count
    }

    /// Seconds until the next queued job becomes runnable (nil: none queued).
    public func nextRunnableDelay() throws -> Double? {
        guard let r = try query("SELECT min(not_before) FROM jobs WHERE state = 'queued'").first, let v = r.first else { return nil }
        switch v {
        case .real(let x): return max(0, x - JobQueue.now())
        case .int(let x): return max(0, Double(x) - JobQueue.now())
        default: return nil
        }
    }
}

// MARK: upload owners

/// The subjects that uploaded each upload (`PUT /uploads`): identical content
/// is one file, and each subject that uploaded it owns it and is charged for it.
extension JobQueue {
    /// Records `owner` as an owner of upload `id`; false when it already was one.
    public func addUploadOwner(_ id: String, owner: String, size: Int) throws -> Bool {
        !(try query("INSERT OR IGNORE INTO upload_owners(id, owner, size, created) VALUES (?,?,?,?) RETURNING id",
                    [.text(id), .text(owner), .int(Int64(size)), .real(JobQueue.now())]).isEmpty)
    }

    public func uploadOwners(_ id: String) throws -> [String] {
        try query("SELECT owner FROM upload_owners WHERE id = ? ORDER BY owner", [.text(id)]).compactMap {
            if case .text(let o) = $0[0] { return o }
            return nil
        }
    }

    /// Removes `owner`'s claim on upload `id` (every claim when nil); returns the owners removed.
    @discardableResult
    public func removeUploadOwners(_ id: String, owner: String? = nil) throws -> [String] {
        let rows = try owner.map { try query("DELETE FROM upload_owners WHERE id = ? AND owner = ? RETURNING owner", [.text(id), .text($0)]) }
            ?? query("DELETE FROM upload_owners WHERE id = ? RETURNING owner", [.text(id)])
        return rows.compactMap { if case .text(let o) = $0[0] { return o }; return nil }
    }

    /// Every (upload id, owner, size) recorded.
    public func uploadOwnerships() throws -> [(id: String, owner: String, size: Int)] {
        try query("SELECT id, owner, size FROM upload_owners").compactMap { r in
            guard case .text(let id) = r[0], case .text(let owner) = r[1], case .int(let size) = r[2] else { return nil }
            return (id, owner, Int(size))
        }
    }

    /// Jobs queued or running whose input is `input` (a path) or that name `source` (`upload:ID`).
    public func activeCount(input: String, source: String) throws -> Int {
        guard case .int(let n) = try query("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running') AND (input = ? OR source = ?)",
                                           [.text(input), .text(source)]).first?.first else { return 0 }
        return Int(n)
    }
}
