import XCTest
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
@testable import ParleyServer
@testable import ParleyWeb
@testable import ParleyAuth
import ParleyTestSupport

/// The transcoding API (issue #14, finding 1) on a real HTTPServer on
/// loopback with curl as the client, real files, the sample media, and the
/// real `parley worker` binary for the end-to-end ladder.
final class TranscodeAPITests: XCTestCase {
    var group: EventLoopGroup!
    var pool: BlockingPool!
    var server: HTTPServer!
    var dataDir = ""
    var inputDir = ""
    var base = ""
    var secret: [UInt8] = []
    static let sample = repositoryPath("samples/sample-720p-12s.mp4")

    override func setUpWithError() throws {
        group = try EventLoopGroup(numberOfThreads: 2, logger: quietLogger)
        pool = BlockingPool(threads: 2)
    }

    override func tearDown() {
        server?.stop()
        pool.shutdown()
        group.syncShutdownGracefully()
        for d in [dataDir, inputDir] where !d.isEmpty { try? FileManager.default.removeItem(atPath: d) }
    }

    /// Serves the routes with `configure`d settings; `inputDir` (holding a copy
    /// of the sample as clip.mp4) is the one transcode input directory.
    func start(_ configure: (inout ServerConfig) -> Void = { _ in }) throws {
        dataDir = tempDir("jobs-data")
        inputDir = tempDir("jobs-input")
        try FileManager.default.copyItem(atPath: Self.sample, toPath: inputDir + "/clip.mp4")
        try serve(configure)
        secret = try ServerSecret.loadOrCreate(dataDir: dataDir)
    }

    /// Serves the routes on `dataDir` with `inputDir` as the input directory and `configure`d settings.
    func serve(_ configure: (inout ServerConfig) -> Void) throws {
        var config = ServerConfig()
        config.dataDir = dataDir
        config.transcodeInputDirs = [inputDir]
        configure(&config)
        let router = HTTPRouter()
        try TranscodeRoutes.install(on: router, config: config, pool: pool)
        server = HTTPServer(group: group, router: router, tls: nil, logger: quietLogger)
        base = "http://127.0.0.1:\(try server.start(at: SocketAddress("127.0.0.1:0")!).port)"
    }

    func token(_ sub: String, transcode: Bool = true, admin: Bool = false, publish: Bool = false) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return JWT.sign(TokenClaims(subject: sub, issuedAt: now, expiresAt: now + 600, canPublish: publish, isAdmin: admin,
                                    canTranscode: transcode), secret: secret)
    }

    struct Reply {
        var code: Int
        var headers: [String: String]
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: JSONValue? { try? JSONValue.parse(text) }
    }

    /// One request with curl: `token` as a Bearer header, `json` or the file `upload` as the body.
    func request(_ method: String, _ path: String, token: String? = nil, json: String? = nil, upload: String? = nil,
                 headers: [String] = []) throws -> Reply {
        let out = tempDir("curl")
        defer { try? FileManager.default.removeItem(atPath: out) }
        var args = ["-sS", "-D", out + "/h", "-o", out + "/b", "-w", "%{http_code}"] + (method == "HEAD" ? ["-I"] : ["-X", method])
        if let token { args += ["-H", "Authorization: Bearer \(token)"] }
        if let json { args += ["-H", "Content-Type: application/json", "--data-binary", json] }
        if let upload { args += ["--data-binary", "@" + upload] }
        for h in headers { args += ["-H", h] }
        let r = try runTool("curl", args + [base + path])
        XCTAssertEqual(r.status, 0, r.err)
        var fields: [String: String] = [:]
        // The last header block (after any 100 Continue).
        let blocks = (try? String(contentsOfFile: out + "/h", encoding: .utf8))?.components(separatedBy: "\r\n\r\n").filter { !$0.isEmpty } ?? []
        for line in (blocks.last ?? "").components(separatedBy: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Reply(code: Int(r.out) ?? -1, headers: fields, body: FileManager.default.contents(atPath: out + "/b") ?? Data())
    }

    // MARK: configuration

    /// `transcode-input-dirs` is a list in parley.json and comma-separated as a
    /// flag; a directory that is not there stops the server before it serves.
    func testInputDirectoriesComeFromTheConfigAndMustExist() throws {
        let a = tempDir("dirs-a"), b = tempDir("dirs-b")
        defer { for d in [a, b] { try? FileManager.default.removeItem(atPath: d) } }
        let file = a + "/parley.json"
        try Data(#"{"transcode-input-dirs": ["\#(a)", "\#(b)"], "job-queue-cap": 7}"#.utf8).write(to: URL(fileURLWithPath: file))
        var c = ServerConfig()
        try c.load(file: file)
        XCTAssertEqual(c.transcodeInputDirs, [a, b])
        XCTAssertEqual(c.jobQueueCap, 7)
        try c.set("transcode-input-dirs", "\(b),\(a)")
        XCTAssertEqual(c.transcodeInputDirs, [b, a])
        XCTAssertEqual(ServerConfig().transcodeInputDirs, [], "none by default")
        try Data(#"{"transcode-input-dirs": [1]}"#.utf8).write(to: URL(fileURLWithPath: file))
        var fresh = ServerConfig()
        XCTAssertThrowsError(try fresh.load(file: file)) { XCTAssertTrue("\($0)".contains("transcode-input-dirs"), "\($0)") }

        c.dataDir = tempDir("dirs-data")
        defer { try? FileManager.default.removeItem(atPath: c.dataDir) }
        c.transcodeInputDirs = [a + "/missing"]
        XCTAssertThrowsError(try TranscodeRoutes.install(on: HTTPRouter(), config: c, pool: pool)) {
            XCTAssertTrue("\($0)".contains("transcode-input-dirs"), "\($0)")
        }
    }

    // MARK: tokens

    func testEveryJobEndpointNeedsATokenWithTheTranscodeGrant() throws {
        try start()
        let viewer = token("viewer", transcode: false, publish: true)
        let forged = JWT.sign(TokenClaims(subject: "x", issuedAt: 0, expiresAt: Int64.max, canTranscode: true), secret: Array(repeating: 7, count: 32))
        let job = #"{"input":"clip.mp4"}"#
        for (method, path, body) in [("POST", "/jobs", job), ("GET", "/jobs", nil), ("GET", "/jobs/1", nil), ("PUT", "/uploads", "abc")] {
            let none = try request(method, path, json: body)
            XCTAssertEqual(none.code, 401, "\(method) \(path): \(none.text)")
            XCTAssertEqual(none.headers["www-authenticate"], "Bearer", "\(method) \(path)")
            let bad = try request(method, path, token: forged, json: body)
            XCTAssertEqual(bad.code, 401, "\(method) \(path)")
            XCTAssertEqual(bad.headers["www-authenticate"], #"Bearer error="invalid_token""#)
            let wrong = try request(method, path, token: viewer, json: body)
            XCTAssertEqual(wrong.code, 403, "\(method) \(path): \(wrong.text)")
            XCTAssertTrue(wrong.text.contains("--can-transcode"), wrong.text)
        }
        XCTAssertEqual(try request("GET", "/jobs", token: token("enc")).code, 200)
        XCTAssertEqual(try request("GET", "/jobs", token: token("ops", transcode: false, admin: true)).code, 200)
        let queued = try request("POST", "/jobs", token: token("enc"), json: job)
        XCTAssertEqual(queued.code, 202, queued.text)
    }

    // MARK: inputs and outputs

    /// Paths outside the input directories, `..`, a symlink that leads out,
    /// missing files and unknown uploads all get one answer, byte for byte.
    func testInputsOutsideTheDirectoriesAreRefusedAlikeWhetherTheyExistOrNot() throws {
        try start { $0.jobBurst = 100 }
        let outside = tempDir("jobs-outside")
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try FileManager.default.copyItem(atPath: Self.sample, toPath: outside + "/secret.mp4")
        try FileManager.default.createSymbolicLink(atPath: inputDir + "/escape.mp4", withDestinationPath: outside + "/secret.mp4")
        try FileManager.default.createSymbolicLink(atPath: inputDir + "/dangling.mp4", withDestinationPath: outside + "/none.mp4")
        let rel = "../" + (outside as NSString).lastPathComponent
        let t = token("enc")
        let probes = [#"{"input":"\#(outside)/secret.mp4"}"#, #"{"input":"\#(outside)/none.mp4"}"#,
                      #"{"input":"\#(rel)/secret.mp4"}"#, #"{"input":"\#(rel)/none.mp4"}"#,
                      #"{"input":"escape.mp4"}"#, #"{"input":"dangling.mp4"}"#, #"{"input":"none.mp4"}"#,
                      #"{"input":"/etc/passwd"}"#, #"{"input":"/etc/no-such-file"}"#,
                      #"{"upload":"\#(String(repeating: "0", count: 64))"}"#, #"{"upload":"../../etc/passwd"}"#]
        let answers = try probes.map { try request("POST", "/jobs", token: t, json: $0) }
        for (p, a) in zip(probes, answers) {
            XCTAssertEqual(a.code, 400, p)
            XCTAssertEqual(a.body, answers[0].body, "\(p) answered differently: \(a.text)")
        }
        XCTAssertFalse(answers[0].text.contains(outside), answers[0].text)
        XCTAssertEqual(try request("GET", "/jobs", token: t).json?["jobs"]?.arrayValue?.count, 0, "nothing was queued")
        XCTAssertEqual(try request("POST", "/jobs", token: t, json: #"{"input":"clip.mp4"}"#).code, 202)
    }

    /// `output` (and any other field a job does not have) is refused by name,
    /// so no client can point the worker's replace-the-directory step anywhere.
    func testUnknownJobFieldsAreRefusedByName() throws {
        try start { $0.jobBurst = 100 }
        let t = token("enc")
        let victim = tempDir("jobs-victim")
        defer { try? FileManager.default.removeItem(atPath: victim) }
        for (body, field) in [(#"{"input":"clip.mp4","output":"\#(victim)"}"#, "output"),
                              (#"{"input":"clip.mp4","ladderr":"360p:365k"}"#, "ladderr"),
                              (#"{"input":"clip.mp4","segment_seconds":0}"#, "segment_seconds"),
                              (#"{"input":"clip.mp4","thumbnails":"yes"}"#, "thumbnails")] {
            let r = try request("POST", "/jobs", token: t, json: body)
            XCTAssertEqual(r.code, 400, body)
            XCTAssertTrue(r.text.contains(field), "\(body): \(r.text)")
        }
        XCTAssertEqual(try request("POST", "/jobs", token: t, json: #"{"input":"clip.mp4",}"#).code, 400, "trailing comma")
        XCTAssertEqual(try request("POST", "/jobs", token: t, json: #"{"input":"clip.mp4","upload":"\#(String(repeating: "a", count: 64))"}"#).code, 400)
    }

    // MARK: uploads

    func testUploadsAreCappedContentAddressedAndIdempotent() throws {
        try start { $0.uploadMaxBytes = 64 << 10 }
        let t = token("enc")
        let dir = tempDir("jobs-upload")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let small = dir + "/small.bin", big = dir + "/big.bin"
        FileManager.default.createFile(atPath: small, contents: Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }))
        FileManager.default.createFile(atPath: big, contents: Data(repeating: 1, count: (64 << 10) + 1))
        let expected = try runTool("sha256sum", [small]).out.split(separator: " ").first.map(String.init)

        let first = try request("PUT", "/uploads", token: t, upload: small)
        XCTAssertEqual(first.code, 201, first.text)
        XCTAssertEqual(first.json?["id"]?.stringValue, expected)
        XCTAssertEqual(first.json?["size"]?.intValue, 50_000)
        let again = try request("PUT", "/uploads", token: t, upload: small, headers: ["Transfer-Encoding: chunked"])
        XCTAssertEqual(again.code, 200, again.text)
        XCTAssertEqual(again.json?["id"]?.stringValue, expected)

        // Over the cap: by Content-Length before the body, and chunked as it arrives.
        let over = try request("PUT", "/uploads", token: t, upload: big)
        XCTAssertEqual(over.code, 413, over.text)
        let overChunked = try request("PUT", "/uploads", token: t, upload: big, headers: ["Transfer-Encoding: chunked"])
        XCTAssertEqual(overChunked.code, 413, overChunked.text)
        XCTAssertEqual(try request("PUT", "/uploads", token: t, json: "").code, 400, "empty upload")
        // One file, named by its hash; no partial files left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dataDir + "/uploads"), [expected!])
        XCTAssertEqual(FileManager.default.contents(atPath: dataDir + "/uploads/" + expected!), FileManager.default.contents(atPath: small))
    }

    // MARK: limits

    func testSubmissionsAreRateLimitedPerSubjectAndTheQueueIsCapped() throws {
        try start {
            $0.jobBurst = 2
            $0.jobRatePerMinute = 1
            $0.jobQueueCap = 3
        }
        let job = #"{"input":"clip.mp4"}"#
        let a = token("alice"), b = token("bob")
        XCTAssertEqual(try request("POST", "/jobs", token: a, json: job).code, 202)
        XCTAssertEqual(try request("POST", "/jobs", token: a, json: job).code, 202)
        let limited = try request("POST", "/jobs", token: a, json: job)
        XCTAssertEqual(limited.code, 429, limited.text)
        XCTAssertGreaterThanOrEqual(Int(limited.headers["retry-after"] ?? "") ?? 0, 1, "\(limited.headers)")
        // Bob has his own bucket; the third job fills the queue.
        XCTAssertEqual(try request("POST", "/jobs", token: b, json: job).code, 202)
        let full = try request("POST", "/jobs", token: b, json: job)
        XCTAssertEqual(full.code, 503, full.text)
        XCTAssertTrue(full.text.contains("queue is full"), full.text)
        XCTAssertNotNil(full.headers["retry-after"])
        XCTAssertEqual(try request("GET", "/jobs", token: token("ops", admin: true)).json?["jobs"]?.arrayValue?.count, 3)
    }

    // MARK: HLS serving

    /// Byte ranges (I-frame playlists use them), validators and caching on /hls.
    func testHLSServesRangesETagsAndCacheControl() throws {
        try start { $0.hlsPublicDefault = true }
        let asset = dataDir + "/hls/demo/360p"
        try FileManager.default.createDirectory(atPath: asset, withIntermediateDirectories: true)
        let bytes = Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })
        FileManager.default.createFile(atPath: asset + "/seg_00001.m4s", contents: bytes)
        FileManager.default.createFile(atPath: asset + "/index.m3u8", contents: Data("#EXTM3U\n".utf8))
        let seg = "/hls/demo/360p/seg_00001.m4s"

        let whole = try request("GET", seg)
        XCTAssertEqual(whole.code, 200)
        XCTAssertEqual(whole.body, bytes)
        XCTAssertEqual(whole.headers["accept-ranges"], "bytes")
        XCTAssertEqual(whole.headers["cache-control"], "public, max-age=31536000, immutable")
        let etag = try XCTUnwrap(whole.headers["etag"])

        let part = try request("GET", seg, headers: ["Range: bytes=100-1099"])
        XCTAssertEqual(part.code, 206)
        XCTAssertEqual(part.headers["content-range"], "bytes 100-1099/10000")
        XCTAssertEqual(part.body, bytes[100..<1100])
        XCTAssertEqual(try request("GET", seg, headers: ["Range: bytes=9000-"]).body, bytes[9000...])
        XCTAssertEqual(try request("GET", seg, headers: ["Range: bytes=-16"]).body, bytes[9984...])
        XCTAssertEqual(try request("GET", seg, headers: ["Range: bytes=9990-20000"]).headers["content-range"], "bytes 9990-9999/10000")
        let past = try request("GET", seg, headers: ["Range: bytes=10000-"])
        XCTAssertEqual(past.code, 416)
        XCTAssertEqual(past.headers["content-range"], "bytes */10000")
        XCTAssertEqual(try request("GET", seg, headers: ["Range: bytes=0-1,5-6"]).code, 200, "several ranges: the whole file")
        XCTAssertEqual(try request("GET", seg, headers: ["Range: bytes=0-9", "If-Range: \"stale\""]).code, 200)

        let cached = try request("GET", seg, headers: ["If-None-Match: \(etag)"])
        XCTAssertEqual(cached.code, 304)
        XCTAssertEqual(cached.body.count, 0)
        XCTAssertEqual(cached.headers["etag"], etag)
        XCTAssertEqual(try request("GET", seg, headers: ["If-None-Match: \"other\""]).code, 200)
        XCTAssertEqual(try request("GET", "/hls/demo/360p/index.m3u8").headers["cache-control"], "public, max-age=2")
        XCTAssertEqual(try request("HEAD", seg).headers["content-length"], "10000")
    }

    /// Assets are private unless public: no token, no file (nor a hint whether it exists).
    func testPrivateAssetsNeedTheOwnersTokenAndPublicOnesDoNot() throws {
        try start()   // hls-public-default false
        try FileManager.default.createDirectory(atPath: dataDir + "/hls/cli-made", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dataDir + "/hls/cli-made/master.m3u8", contents: Data("#EXTM3U\n".utf8))
        XCTAssertEqual(try request("GET", "/hls/cli-made/master.m3u8").code, 401)
        XCTAssertEqual(try request("GET", "/hls/cli-made/missing.m3u8").code, 401, "missing and present look alike")
        XCTAssertEqual(try request("GET", "/hls/hls/cli-made/master.m3u8").code, 401, "another spelling of the same file")
        XCTAssertEqual(try request("GET", "/hls/cli-made/master.m3u8", token: token("enc")).code, 404, "not enc's asset")
        XCTAssertEqual(try request("GET", "/hls/cli-made/master.m3u8", token: token("ops", admin: true)).code, 200)
    }

    /// The whole path: upload the sample, queue a job for it, run the real
    /// worker, and play the ladder from /hls: private with the owner's token
    /// (header or ?token=, which playlists pass on), public without one.
    func testUploadJobAndWorkerProduceALadderServedUnderHLS() throws {
        try start()
        let alice = token("alice"), bob = token("bob")
        let up = try request("PUT", "/uploads", token: alice, upload: Self.sample, headers: ["Expect: 100-continue"])
        XCTAssertEqual(up.code, 201, up.text)
        let id = try XCTUnwrap(up.json?["id"]?.stringValue)
        let opts = #""ladder":"234p:145k","preset":"ultrafast","segment_seconds":4"#
        let priv = try request("POST", "/jobs", token: alice, json: #"{"upload":"\#(id)",\#(opts)}"#)
        XCTAssertEqual(priv.code, 202, priv.text)
        let pub = try request("POST", "/jobs", token: alice, json: #"{"input":"clip.mp4","public":true,\#(opts)}"#)
        XCTAssertEqual(pub.code, 202, pub.text)

        let worker = try runTool(parleyBinary, ["worker", "--data-dir", dataDir, "--once", "--poll", "0.1"], timeout: 300)
        XCTAssertEqual(worker.status, 0, worker.err)

        let privID = try XCTUnwrap(priv.json?["id"]?.intValue), pubID = try XCTUnwrap(pub.json?["id"]?.intValue)
        let job = try request("GET", "/jobs/\(privID)", token: alice)
        XCTAssertEqual(job.json?["state"], "done", job.text)
        XCTAssertEqual(job.json?["input"]?["upload"]?.stringValue, id)
        let playlist = try XCTUnwrap(job.json?["playlist"]?.stringValue)
        XCTAssertEqual(playlist, priv.json?["playlist"]?.stringValue)
        let list = try request("GET", "/jobs", token: alice)
        XCTAssertEqual(list.json?["jobs"]?.arrayValue?.count, 2)
        for text in [list.text, job.text] {
            XCTAssertFalse(text.contains(dataDir) || text.contains(inputDir) || text.contains("/tmp/"), "server paths leak: \(text)")
        }
        // Bob sees none of Alice's jobs or private files.
        XCTAssertEqual(try request("GET", "/jobs", token: bob).json?["jobs"]?.arrayValue?.count, 0)
        XCTAssertEqual(try request("GET", "/jobs/\(privID)", token: bob).code, 404)
        XCTAssertEqual(try request("GET", playlist, token: bob).code, 404)

        XCTAssertEqual(try request("GET", playlist).code, 401)
        let master = try request("GET", playlist, token: alice)
        XCTAssertEqual(master.code, 200)
        XCTAssertTrue(master.text.contains("#EXT-X-STREAM-INF"), master.text)
        XCTAssertEqual(master.headers["cache-control"], "private, max-age=2")
        // ?token= for players that cannot set headers: every URI carries it on.
        let viaQuery = try request("GET", playlist + "?token=" + alice)
        XCTAssertEqual(viaQuery.code, 200)
        let uris = viaQuery.text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
        XCTAssertFalse(uris.isEmpty)
        for uri in uris {
            XCTAssertTrue(uri.hasSuffix("token=" + alice), String(uri))
            let rung = try request("GET", (playlist as NSString).deletingLastPathComponent + "/" + uri)
            XCTAssertEqual(rung.code, 200, String(uri))
            XCTAssertTrue(rung.text.contains("#EXTINF"), rung.text)
        }

        // The I-frame playlist's byte ranges, fetched with Range, are those bytes of the segment.
        let assetURL = (playlist as NSString).deletingLastPathComponent
        let iframeURI = try XCTUnwrap(master.text.split(separator: "\n").first { $0.hasPrefix("#EXT-X-I-FRAME-STREAM-INF") }?
            .components(separatedBy: "URI=\"").last?.split(separator: "\"").first.map(String.init))
        let iframes = try request("GET", assetURL + "/" + iframeURI, token: alice).text.split(separator: "\n")
        let rangeLine = try XCTUnwrap(iframes.firstIndex { $0.hasPrefix("#EXT-X-BYTERANGE:") })
        let spec = iframes[rangeLine].dropFirst("#EXT-X-BYTERANGE:".count).split(separator: "@").compactMap { Int($0) }
        let segURL = assetURL + "/" + (iframeURI as NSString).deletingLastPathComponent + "/" + iframes[rangeLine + 1]
        let keyframe = try request("GET", segURL, token: alice, headers: ["Range: bytes=\(spec[1])-\(spec[1] + spec[0] - 1)"])
        XCTAssertEqual(keyframe.code, 206)
        XCTAssertEqual(keyframe.body.count, spec[0])
        XCTAssertEqual(keyframe.body, try request("GET", segURL, token: alice).body.subdata(in: spec[1]..<spec[1] + spec[0]))

        let pubJob = try request("GET", "/jobs/\(pubID)", token: alice)
        XCTAssertEqual(pubJob.json?["state"], "done", pubJob.text)
        XCTAssertEqual(pubJob.json?["input"]?["input"], "clip.mp4")
        let pubMaster = try request("GET", try XCTUnwrap(pubJob.json?["playlist"]?.stringValue))
        XCTAssertEqual(pubMaster.code, 200, "public without a token")
        XCTAssertEqual(pubMaster.headers["cache-control"], "public, max-age=2")
    }
}
