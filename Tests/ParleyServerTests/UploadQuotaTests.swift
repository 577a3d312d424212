import XCTest
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
@testable import ParleyServer
@testable import ParleyWeb
import ParleyTestSupport
import ParleyTranscode

/// The disk used by uploads (follow-up of issue #14): a total cap, a cap per
/// token subject, owners and `DELETE /uploads/{id}`, accounting that survives
/// a restart. Real HTTPServer on loopback, curl as the client, real files.
extension TranscodeAPITests {
    /// A file of `count` bytes whose content depends on `seed` (distinct seeds, distinct uploads).
    func blob(_ count: Int, seed: UInt8) throws -> String {
        let dir = tempDir("quota-blob")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/blob-\(seed).bin"
        FileManager.default.createFile(atPath: path, contents: Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) ^ seed }))
        return path
    }

    var storedUploads: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dataDir + "/uploads")) ?? []).sorted() }

    /// Serves the routes again on the same data directory, as a restarted daemon would.
    func restart(_ configure: (inout ServerConfig) -> Void) throws {
        server.stop()
        try serve(configure)
    }

    /// Distinct uploads from several subjects cannot fill the disk: past
    /// `uploads-max-total-bytes`, 507 whether the length is announced or the
    /// body is chunked, and the refused body leaves no partial file.
    func testUploadsPastTheTotalCapAreRefusedAndLeaveNoPartialFile() throws {
        try start {
            $0.uploadMaxBytes = 64 << 10
            $0.uploadsMaxTotalBytes = 100_000
        }
        let a = try blob(60_000, seed: 1), b = try blob(50_000, seed: 2)
        let first = try request("PUT", "/uploads", token: token("alice"), upload: a)
        XCTAssertEqual(first.code, 201, first.text)
        let idA = try XCTUnwrap(first.json?["id"]?.stringValue)
        XCTAssertEqual(UploadStore.storedBytes.current, 60_000)

        let bob = token("bob")
        let announced = try request("PUT", "/uploads", token: bob, upload: b)
        XCTAssertEqual(announced.code, 507, announced.text)
        XCTAssertTrue(announced.json?["error"]?.stringValue?.contains("uploads-max-total-bytes") == true, announced.text)
        let chunked = try request("PUT", "/uploads", token: bob, upload: b, headers: ["Transfer-Encoding: chunked"])
        XCTAssertEqual(chunked.code, 507, chunked.text)
        XCTAssertEqual(storedUploads, [idA], "no partial file is left")
        XCTAssertEqual(UploadStore.storedBytes.current, 60_000)

        // Freeing space lets the refused upload in.
        XCTAssertEqual(try request("DELETE", "/uploads/" + idA, token: token("alice")).code, 204)
        XCTAssertEqual(UploadStore.storedBytes.current, 0)
        let now = try request("PUT", "/uploads", token: bob, upload: b, headers: ["Transfer-Encoding: chunked"])
        XCTAssertEqual(now.code, 201, now.text)
        XCTAssertEqual(storedUploads, [try XCTUnwrap(now.json?["id"]?.stringValue)])
    }

    /// `uploads-max-bytes-per-subject`: one subject's uploads are capped while
    /// another's still fit, and identical content counts for each subject that
    /// uploaded it (stored once; gone when its last owner deletes it).
    func testEachSubjectsUploadsAreCappedAndSharedContentCountsForEachOwner() throws {
        try start {
            $0.uploadMaxBytes = 64 << 10
            $0.uploadsMaxBytesPerSubject = 100_000
        }
        let alice = token("alice"), bob = token("bob")
        let a = try blob(60_000, seed: 3), b = try blob(50_000, seed: 4)
        let idA = try XCTUnwrap(try request("PUT", "/uploads", token: alice, upload: a).json?["id"]?.stringValue)
        let over = try request("PUT", "/uploads", token: alice, upload: b)
        XCTAssertEqual(over.code, 507, over.text)
        XCTAssertTrue(over.json?["error"]?.stringValue?.contains("uploads-max-bytes-per-subject") == true, over.text)
        XCTAssertEqual(try request("PUT", "/uploads", token: bob, upload: b).code, 201, "bob has his own quota")

        // Carol uploads Alice's content too: one file, charged to both.
        let shared = try request("PUT", "/uploads", token: token("carol"), upload: a)
        XCTAssertEqual(shared.code, 200, shared.text)
        XCTAssertEqual(try request("PUT", "/uploads", token: token("carol"), upload: b).code, 507, "carol holds a's 60,000 bytes")
        XCTAssertEqual(storedUploads.count, 2)
        XCTAssertEqual(UploadStore.storedBytes.current, 110_000)

        XCTAssertEqual(try request("DELETE", "/uploads/" + idA, token: alice).code, 204)
        XCTAssertTrue(storedUploads.contains(idA), "carol still owns it")
        XCTAssertEqual(try request("PUT", "/uploads", token: alice, upload: b).code, 200, "alice's quota is free again (bob stored b)")
        XCTAssertEqual(try request("DELETE", "/uploads/" + idA, token: token("carol")).code, 204)
        XCTAssertFalse(storedUploads.contains(idA), "its last owner deleted it")
        XCTAssertEqual(UploadStore.storedBytes.current, 50_000)
    }

    /// DELETE frees an upload for its owner; another subject gets 404 (as for
    /// a missing one) and cannot queue a job on it; while a job reads it,
    /// nobody (adm included) may delete it (409).
    func testDeleteIsForTheOwnerAndNotWhileAJobReadsTheUpload() throws {
        try start()
        let alice = token("alice"), bob = token("bob"), ops = token("ops", transcode: false, admin: true)
        let id = try XCTUnwrap(try request("PUT", "/uploads", token: alice, upload: try blob(10_000, seed: 5)).json?["id"]?.stringValue)

        XCTAssertEqual(try request("DELETE", "/uploads/" + id).code, 401)
        XCTAssertEqual(try request("DELETE", "/uploads/" + id, token: token("viewer", transcode: false)).code, 403)
        let other = try request("DELETE", "/uploads/" + id, token: bob)
        XCTAssertEqual(other.code, 404, other.text)
        XCTAssertEqual(other.body, try request("DELETE", "/uploads/" + String(repeating: "0", count: 64), token: bob).body,
                       "someone else's upload and a missing one look alike")
        let bobsJob = try request("POST", "/jobs", token: bob, json: #"{"upload":"\#(id)"}"#)
        XCTAssertEqual(bobsJob.code, 400, "bob cannot use alice's upload")
        XCTAssertEqual(bobsJob.body, try request("POST", "/jobs", token: bob, json: #"{"upload":"\#(String(repeating: "0", count: 64))"}"#).body,
                       "it is an unknown upload to him")

        let job = try request("POST", "/jobs", token: alice, json: #"{"upload":"\#(id)","ladder":"234p:145k"}"#)
        XCTAssertEqual(job.code, 202, job.text)
        for t in [alice, ops] {
            let busy = try request("DELETE", "/uploads/" + id, token: t)
            XCTAssertEqual(busy.code, 409, busy.text)
        }
        XCTAssertEqual(storedUploads, [id])

        // The job runs and finishes (as the worker would record it): the upload may go.
        let queue = try SQLiteJobQueue.open(dataDir: dataDir)
        let running = try XCTUnwrap(try queue.claim())
        XCTAssertEqual(try request("DELETE", "/uploads/" + id, token: alice).code, 409, "running")
        try queue.finish(running.id, output: running.output ?? "")
        XCTAssertEqual(try request("DELETE", "/uploads/" + id, token: alice).code, 204)
        XCTAssertEqual(storedUploads, [])
        XCTAssertEqual(try request("DELETE", "/uploads/" + id, token: alice).code, 404, "already gone")
        XCTAssertEqual(try request("POST", "/jobs", token: alice, json: #"{"upload":"\#(id)"}"#).code, 400)
    }

    /// The accounting comes from the files and the owners table at start: a
    /// restarted daemon refuses what the caps refuse, drops partial files a
    /// stopped one left, and forgets owners of files removed by hand.
    func testARestartKeepsTheAccounting() throws {
        let caps: (inout ServerConfig) -> Void = {
            $0.uploadMaxBytes = 64 << 10
            $0.uploadsMaxTotalBytes = 170_000
            $0.uploadsMaxBytesPerSubject = 100_000
        }
        try start(caps)
        let alice = token("alice"), bob = token("bob")
        let idA = try XCTUnwrap(try request("PUT", "/uploads", token: alice, upload: try blob(60_000, seed: 6)).json?["id"]?.stringValue)
        XCTAssertEqual(try request("PUT", "/uploads", token: bob, upload: try blob(50_000, seed: 7)).code, 201)
        FileManager.default.createFile(atPath: dataDir + "/uploads/.partial-dead", contents: Data(count: 30_000))

        try restart(caps)
        XCTAssertFalse(storedUploads.contains(".partial-dead"))
        XCTAssertEqual(UploadStore.storedBytes.current, 110_000)
        let c = try blob(50_000, seed: 8)
        let subject = try request("PUT", "/uploads", token: alice, upload: c)
        XCTAssertEqual(subject.code, 507, "alice holds 60,000 of 100,000: \(subject.text)")
        XCTAssertTrue(subject.text.contains("uploads-max-bytes-per-subject"), subject.text)
        let total = try request("PUT", "/uploads", token: token("carol"), upload: try blob(64_000, seed: 9))
        XCTAssertEqual(total.code, 507, "110,000 of 170,000 stored: \(total.text)")
        XCTAssertTrue(total.text.contains("uploads-max-total-bytes"), total.text)
        XCTAssertEqual(try request("DELETE", "/uploads/" + idA, token: bob).code, 404, "owners survive the restart")

        // A file removed by hand frees its owner's quota at the next start.
        XCTAssertEqual(unlink(dataDir + "/uploads/" + idA), 0)
        try restart(caps)
        XCTAssertEqual(UploadStore.storedBytes.current, 50_000)
        XCTAssertEqual(try request("PUT", "/uploads", token: alice, upload: c).code, 201)
    }
}
