import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyTranscode

/// DATA-DIR/parley.db files written by earlier Parley builds (made here with
/// the sqlite3 shell, as those builds made them) open cleanly and keep their rows.
final class SQLiteJobQueueTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDir("jobsdb") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// The `jobs` table as the first JobQueue made it (no submissions, no upload owners).
    static let firstShape = """
        PRAGMA journal_mode=WAL;
        CREATE TABLE jobs (
          id INTEGER PRIMARY KEY AUTOINCREMENT, input TEXT NOT NULL, options TEXT NOT NULL, output TEXT,
          state TEXT NOT NULL DEFAULT 'queued', progress REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
          max_attempts INTEGER NOT NULL DEFAULT 3, error TEXT, created REAL NOT NULL, updated REAL NOT NULL,
          not_before REAL NOT NULL DEFAULT 0);
        CREATE INDEX jobs_state ON jobs(state, not_before, id);
        """
    /// What the last unversioned JobQueue added to it.
    static let lastUnversionedShape = firstShape + """
        ALTER TABLE jobs ADD COLUMN owner TEXT; ALTER TABLE jobs ADD COLUMN source TEXT;
        ALTER TABLE jobs ADD COLUMN asset TEXT; ALTER TABLE jobs ADD COLUMN public INTEGER;
        CREATE INDEX jobs_asset ON jobs(asset, id); CREATE INDEX jobs_owner ON jobs(owner, id);
        CREATE TABLE upload_owners (id TEXT NOT NULL, owner TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL, PRIMARY KEY (id, owner));
        CREATE INDEX upload_owners_owner ON upload_owners(owner);
        """

    func sqlite(_ sql: String) throws -> String {
        let r = try runTool("sqlite3", [dir + "/parley.db"], stdin: sql)
        XCTAssertEqual(r.status, 0, r.err)
        return r.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func optionsJSON(_ input: String) throws -> String {
        String(decoding: try JSONEncoder().encode(TranscodeOptions(input: input, output: "")), as: UTF8.self)
    }

    func testADatabaseFromBeforeSubmissionsMigratesAndKeepsItsJobs() throws {
        _ = try sqlite(Self.firstShape + """
            INSERT INTO jobs(input, options, state, created, updated) VALUES ('/media/old.mp4', '\(try optionsJSON("/media/old.mp4"))', 'queued', 1, 1);
            """)
        let q = try SQLiteJobQueue.open(dataDir: dir)
        XCTAssertEqual(try sqlite("PRAGMA user_version;"), "\(SQLiteJobQueue.schema.count)")
        XCTAssertEqual(try sqlite("SELECT name FROM pragma_table_info('jobs') WHERE name IN ('owner', 'source', 'asset', 'public') ORDER BY name;"),
                       "asset\nowner\npublic\nsource")

        let old = try XCTUnwrap(try q.get(1))
        XCTAssertEqual(old.input, "/media/old.mp4")
        XCTAssertNil(old.submission)
        let submission = Job.Submission(owner: "ann", source: "upload:abc", asset: "clip-2", isPublic: true)
        let id = try XCTUnwrap(try q.enqueue(input: "/media/new.mp4", options: TranscodeOptions(input: "", output: ""), submission: submission, cap: 10))
        XCTAssertEqual(try q.get(id)?.submission, submission)
        XCTAssertEqual(try q.get(id)?.output, dir + "/hls/clip-2")
        XCTAssertEqual(try q.claim()?.id, 1, "the old job is still first in line")
        XCTAssertTrue(try q.addUploadOwner("abc", owner: "ann", size: 5))
        XCTAssertEqual(try q.uploadOwners("abc"), ["ann"])

        // Opening again (another process, a restart) changes nothing.
        let again = try SQLiteJobQueue.open(dataDir: dir)
        XCTAssertEqual(try again.list().map(\.id), [id, 1])
    }

    func testADatabaseFromBeforeSchemaVersionsMigratesAndKeepsSubmissionsAndOwners() throws {
        _ = try sqlite(Self.lastUnversionedShape + """
            INSERT INTO jobs(input, options, output, state, created, updated, owner, source, asset, public)
              VALUES ('/d/uploads/abc', '\(try optionsJSON("/d/uploads/abc"))', '/d/hls/talk-1', 'done', 1, 1, 'bob', 'upload:abc', 'talk-1', NULL);
            INSERT INTO upload_owners VALUES ('abc', 'bob', 1234, 1);
            """)
        XCTAssertEqual(try sqlite("PRAGMA user_version;"), "0")
        let q = try SQLiteJobQueue.open(dataDir: dir)
        XCTAssertEqual(try sqlite("PRAGMA user_version;"), "\(SQLiteJobQueue.schema.count)")
        XCTAssertEqual(try q.submission(forAsset: "talk-1"), Job.Submission(owner: "bob", source: "upload:abc", asset: "talk-1", isPublic: nil))
        XCTAssertEqual(try q.get(1)?.state, .done)
        XCTAssertEqual(try q.uploadOwnerships().map { "\($0.id) \($0.owner) \($0.size)" }, ["abc bob 1234"])
        XCTAssertFalse(try q.addUploadOwner("abc", owner: "bob", size: 1234), "already an owner")
    }
}
