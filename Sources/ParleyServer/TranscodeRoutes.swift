import ParleyAuth
import ParleyWeb
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyTranscode

/// The transcoding API on the daemon's listener (docs/protocol.md "HTTP
/// endpoints", docs/security.md "Transcoding jobs, uploads and HLS"):
///
/// - `PUT /uploads`: media in, streamed to DATA-DIR/uploads (transcode grant),
///   within a total and a per-subject quota; `DELETE /uploads/{id}` frees it;
/// - `POST /jobs`, `GET /jobs`, `GET /jobs/{id}`: the worker's SQLite queue
///   (transcode grant: own jobs; `adm`: all). Clients name inputs as upload
///   ids or relative names in `transcode-input-dirs`, never server paths,
///   and the server picks the output, DATA-DIR/hls/ASSET;
/// - `/hls/…`: finished ladders, public or by token, with ranges and validators.
///
/// Their SQLite and disk work runs on `pool` (`blocking-threads`), never on
/// the connection's loop: every route but `PUT /uploads` is a `blocking:`
/// route, and an upload's body is written on the loop (a read's worth at a
/// time) but made durable and stored on the pool.
enum TranscodeRoutes {
    static func install(on router: HTTPRouter, config: ServerConfig, pool: BlockingPool) throws {
        let dataDir = config.dataDir
        let hlsRoot = dataDir + "/hls", uploadsDir = dataDir + "/uploads"
        for d in [hlsRoot, uploadsDir] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let realHLSRoot = HLSFiles.realPath(hlsRoot) ?? hlsRoot
        let auth = BearerAuth(secret: try ServerSecret.loadOrCreate(dataDir: dataDir))
        let inputs = try JobInputs(uploadsDir: uploadsDir, inputDirs: config.transcodeInputDirs)
        let queue = try SQLiteJobQueue.open(dataDir: dataDir)
        let uploads = try UploadStore(dir: uploadsDir, queue: queue, maxTotal: config.uploadsMaxTotalBytes,
                                      maxPerSubject: config.uploadsMaxBytesPerSubject)
        let buckets = KeyedTokenBuckets(burst: config.jobBurst, perMinute: config.jobRatePerMinute)
        let (cap, uploadMax, publicDefault) = (config.jobQueueCap, config.uploadMaxBytes, config.hlsPublicDefault)
        Metrics.register()

        router.addStreaming("PUT", .exact("/uploads")) { req in
            let claims: AuthClaims
            do throws(HTTPRefusal) { claims = try auth.require(.transcode, req) } catch { return .respond(error.response) }
            // A promised length is held against the caps before any body byte
            // is read (one over upload-max-bytes gets the server's 413 instead).
            var promised = 0
            if case .contentLength(let n) = req.head.bodyLength, n <= uploadMax { promised = n }
            do { return .stream(maxBytes: uploadMax, sink: try UploadSink(store: uploads, subject: claims.subject, expected: promised,
                                                                         pool: pool, loop: req.loop)) }
            catch let r as HTTPRefusal { return .respond(r.response) } catch {
                return .respond(.error(.internalServerError, "\(error)"))
            }
        }

        router.add("DELETE", .prefix("/uploads/"), blocking: pool) { req in
            let claims = try auth.require(.transcode, req)
            let id = req.pathRemainder.hasPrefix("/") ? String(req.pathRemainder.dropFirst()) : req.pathRemainder
            try uploads.delete(id, by: claims.isAdmin ? nil : claims.subject)
            return HTTPServerResponse(status: .noContent)
        }

        router.add("POST", .exact("/jobs"), blocking: pool) { req in
            let claims = try auth.require(.transcode, req)
            if let wait = buckets.take(claims.subject) {
                Metrics.refused("rate_limited")
                var r = HTTPServerResponse.error(.tooManyRequests, "too many job submissions; try again in \(Int(wait.rounded(.up))) s")
                r.headers.add("Retry-After", String(Int(wait.rounded(.up))))
                throw HTTPRefusal(r)
            }
            let spec: JobRequest
            do { spec = try JobRequest(parsing: req.body) } catch {
                Metrics.refused("bad_request")
                throw error
            }
            // Random (128 bits): never reused, so never another job's, and not guessable.
            let asset = "a" + (0..<2).map { _ in String(format: "%016llx", UInt64.random(in: 0...UInt64.max)) }.joined()
            let submission = Job.Submission(owner: claims.subject, source: spec.source, asset: asset, isPublic: spec.isPublic)
            func enqueue(_ input: () throws -> String) throws -> Int64? {
                let path: String
                do { path = try input() } catch {
                    Metrics.refused("bad_request")
                    throw error
                }
                return try queue.enqueue(input: path, options: spec.options, submission: submission, cap: cap)
            }
            let queued: Int64?
            if let upload = spec.upload {
                // Only the upload's owners (and adm) may use it; another subject's is "not an upload id".
                queued = try uploads.using(upload) { owners in
                    try enqueue {
                        guard claims.isAdmin || owners.contains(claims.subject) else { throw JobInputs.refusal }
                        return try inputs.upload(upload)
                    }
                }
            } else {
                queued = try enqueue { try inputs.file(named: spec.input!) }
            }
            guard let id = queued else {
                Metrics.refused("queue_full")
                var r = HTTPServerResponse.error(.serviceUnavailable, "the job queue is full (\(cap) jobs queued or running); try again later")
                r.headers.add("Retry-After", "30")
                throw HTTPRefusal(r)
            }
            Metrics.submitted.inc()
            return HTTPServerResponse.json(HTTPStatus(code: 202, reason: "Accepted"),
                         ["id": .number(Double(id)), "state": "queued", "asset": .string(asset),
                          "playlist": .string("/hls/\(asset)/master.m3u8")])
        }

        router.add("GET", .prefix("/jobs"), blocking: pool) { req in
            let claims = try auth.require(.transcode, req)
            let owner = claims.isAdmin ? nil : claims.subject
            let rest = req.pathRemainder.hasPrefix("/") ? String(req.pathRemainder.dropFirst()) : req.pathRemainder
            if rest.isEmpty {
                return .json(.ok, ["jobs": .array(try queue.list(owner: owner).map { JobView.json($0, dataDir: queue.dataDir) })])
            }
            // Another subject's job is "no such job", as is a missing one.
            guard let id = Int64(rest), let job = try queue.get(id), owner == nil || job.submission?.owner == owner else {
                throw HTTPRefusal(.notFound, "no such job")
            }
            return .json(.ok, JobView.json(job, dataDir: queue.dataDir))
        }

        router.add("GET", .prefix("/hls/"), blocking: pool) { req in
            // The asset decides who may read: its newest job's `public`, else the
            // default. It is read from the file that would be served (so no
            // spelling of the URL reaches one asset under another's name), or
            // for a missing file from the URL, so a private asset's files are
            // not confirmed or denied to someone without a token.
            let path = HLSFiles.resolve(urlPath: req.pathRemainder, root: hlsRoot)
            var components = (req.pathRemainder.removingPercentEncoding ?? "").split(separator: "/")
            if let path, path.hasPrefix(realHLSRoot + "/") {
                components = path.dropFirst(realHLSRoot.count + 1).split(separator: "/")
            } else if components.first == "hls" {
                components.removeFirst()
            }
            let asset = components.first.map(String.init) ?? ""
            let submission = HLSFiles.isSafeAssetName(asset) ? try queue.submission(forAsset: asset) : nil
            let isPublic = submission?.isPublic ?? publicDefault
            var queryToken: String?
            if !isPublic {
                let claims = try auth.require(.transcode, req, allowQueryToken: true)
                // A private asset is its owner's (adm reads all); someone else's is "no such file".
                guard claims.isAdmin || (submission != nil && submission?.owner == claims.subject) else {
                    throw HTTPRefusal(.notFound, "no such file")
                }
                if req.bearerToken == nil { queryToken = req.queryValue("token") }
            }
            guard let path, let type = HLSFiles.contentType(forPath: path) else { throw HTTPRefusal(.notFound, "no such file") }
            let isPlaylist = path.hasSuffix(".m3u8")
            if isPlaylist, let token = queryToken {
                return try HLSPlaylist.withToken(path, token: token, contentType: type)
            }
            // Asset names are unique per job, so a segment never changes: cache it for good.
            let cache = (isPublic ? "public" : "private") + (isPlaylist || path.hasSuffix(".json") ? ", max-age=2" : ", max-age=31536000, immutable")
            var r = HTTPServerResponse.file(path, contentType: type, request: req, cacheControl: cache)
            r.headers.add("Access-Control-Allow-Origin", "*")
            return r
        }
    }

    enum Metrics {
        static let submitted = MetricsRegistry.shared.counter("parley_jobs_submitted_total", help: "Transcoding jobs queued through POST /jobs")
        static let reasons = ["rate_limited", "queue_full", "bad_request"]

        /// Registers every counter, so /metrics shows them at zero from the start.
        static func register() {
            _ = (submitted, UploadSink.uploaded, UploadSink.bytes, UploadStore.storedBytes)
            for r in UploadStore.reasons { UploadStore.refusals(r).inc(0) }
            for r in reasons { counter(r).inc(0) }
        }

        static func refused(_ reason: String) { counter(reason).inc() }

        private static func counter(_ reason: String) -> Counter {
            MetricsRegistry.shared.counter("parley_jobs_refused_total", help: "POST /jobs refused after authentication, by reason",
                                           labels: [("reason", reason)])
        }
    }
}

/// The body of `POST /jobs`: the input (exactly one of `upload`, an upload
/// id, or `input`, a relative name in `transcode-input-dirs`), `public`, and
/// the transcode options of `TranscodeOptions`. Any other field is refused,
/// named, as `parley.json` refuses unknown keys.
struct JobRequest {
    static let optionFields = ["ladder", "segment_seconds", "format", "preset", "audio_bitrate", "thumbnails", "threads"]
    static let fields = ["upload", "input", "public"] + optionFields

    var upload: String?
    var input: String?
    var isPublic: Bool?
    var options: TranscodeOptions

    /// How the job API shows the input: `upload:ID` or `input:NAME`.
    var source: String { upload.map { "upload:" + $0 } ?? "input:" + (input ?? "") }

    init(parsing body: [UInt8]) throws(HTTPRefusal) {
        func bad(_ m: String) -> HTTPRefusal { HTTPRefusal(.badRequest, m) }
        let object: [String: JSONValue]
        do {
            guard let o = try JSONValue.parse(String(decoding: body, as: UTF8.self)).objectValue else {
                throw bad("expected a JSON object")
            }
            object = o
        } catch let e as HTTPRefusal { throw e } catch { throw bad("\(error)") }
        if let unknown = object.keys.sorted().first(where: { !Self.fields.contains($0) }) {
            let why = unknown == "output" ? " (the server chooses where the ladder goes)" : ""
            throw bad("unknown field \"\(unknown)\"\(why); the fields are \(Self.fields.joined(separator: ", "))")
        }
        func string(_ k: String) throws(HTTPRefusal) -> String? {
            guard let v = object[k] else { return nil }
            guard let s = v.stringValue else { throw bad("\(k): must be a string") }
            return s
        }
        upload = try string("upload")
        input = try string("input")
        guard (upload == nil) != (input == nil) else { throw bad("give exactly one of \"upload\" (an upload id) or \"input\" (a file name)") }
        if let p = object["public"] {
            guard let b = p.boolValue else { throw bad("public: must be true or false") }
            isPublic = b
        }
        var opts = object.filter { Self.optionFields.contains($0.key) }
        opts["input"] = "-"
        do {
            options = try JSONDecoder().decode(TranscodeOptions.self, from: Data(JSONValue.object(opts).serialized.utf8))
            try options.validate()
        } catch let e as DecodingError {
            var field = "options"
            switch e {
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): field = c.codingPath.last?.stringValue ?? field
            case .keyNotFound(let k, _): field = k.stringValue
            @unknown default: break
            }
            throw bad("\(field): invalid value")
        } catch {
            throw bad("\(error)")
        }
    }
}

/// A job as the API shows it: no server paths. The input is the name the
/// client gave; errors have paths replaced by those names.
enum JobView {
    static func json(_ j: Job, dataDir: String) -> JSONValue {
        if j.kind == .recordExport {
            // Names the recording, never a path; its files are under GET /recordings/{id}.
            return ["id": .number(Double(j.id)), "kind": .string(j.kind.rawValue), "recording": .string(j.input),
                    "state": .string(j.state.rawValue), "attempts": .number(Double(j.attempts)),
                    "max_attempts": .number(Double(j.maxAttempts)), "created": .number(j.created), "updated": .number(j.updated),
                    "error": j.error.map { .string($0.replacingOccurrences(of: dataDir, with: "DATA-DIR")) } ?? .null]
        }
        let asset = j.submission?.asset ?? j.output.map { ($0 as NSString).lastPathComponent }
        var input: JSONValue = ["local": .string((j.input as NSString).lastPathComponent)]
        if let source = j.submission?.source, let colon = source.firstIndex(of: ":") {
            input = .object([String(source[..<colon]): .string(String(source[source.index(after: colon)...]))])
        }
        let shownInput = j.submission?.source ?? (j.input as NSString).lastPathComponent
        var error = j.error
        for (path, name) in [(j.input, shownInput), (j.output ?? "\0", "hls/" + (asset ?? "")), (dataDir, "DATA-DIR")] {
            error = error?.replacingOccurrences(of: path, with: name)
        }
        let o = j.options
        var v: [String: JSONValue] = [
            "id": .number(Double(j.id)), "kind": .string(j.kind.rawValue), "state": .string(j.state.rawValue), "progress": .number(j.progress),
            "attempts": .number(Double(j.attempts)), "max_attempts": .number(Double(j.maxAttempts)),
            "created": .number(j.created), "updated": .number(j.updated), "input": input,
            "error": error.map(JSONValue.string) ?? .null,
            "options": ["ladder": o.ladder.map(JSONValue.string) ?? .null, "segment_seconds": .number(o.segmentSeconds),
                        "format": .string(o.format.rawValue), "preset": .string(o.preset),
                        "audio_bitrate": .number(Double(o.audioBitRate)), "thumbnails": .bool(o.thumbnails),
                        "threads": .number(Double(o.encoderThreads))],
        ]
        if let s = j.submission {
            v["owner"] = .string(s.owner)
            v["public"] = s.isPublic.map(JSONValue.bool) ?? .null
        }
        if let asset {
            v["asset"] = .string(asset)
            if j.state == .done { v["playlist"] = .string("/hls/\(asset)/master.m3u8") }
        }
        return .object(v)
    }
}

/// Playlists fetched with `?token=` (players that cannot set headers): every
/// URI in them gets the same `?token=`, so the player's next requests carry it.
enum HLSPlaylist {
    /// Playlists are small; a bigger file is not one we wrote.
    static let maxBytes = 4 << 20

    static func withToken(_ path: String, token: String, contentType: String) throws(HTTPRefusal) -> HTTPServerResponse {
        guard let data = FileManager.default.contents(atPath: path), data.count <= maxBytes else {
            throw HTTPRefusal(.notFound, "no such file")
        }
        let q = "token=" + (token.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? "")
        func tagged(_ uri: Substring) -> String { uri + (uri.contains("?") ? "&" : "?") + q }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.isEmpty { return "" }
            if !line.hasPrefix("#") { return tagged(line) }
            // Tags with URI="…" (EXT-X-MAP, EXT-X-MEDIA, EXT-X-I-FRAME-STREAM-INF).
            guard let start = line.range(of: "URI=\"") else { return String(line) }
            guard let end = line[start.upperBound...].firstIndex(of: "\"") else { return String(line) }
            return line[..<start.upperBound] + tagged(line[start.upperBound..<end]) + line[end...]
        }
        var r = HTTPServerResponse.text(.ok, lines.joined(separator: "\n"), contentType: contentType)
        r.headers.add("Cache-Control", "private, no-store")
        r.headers.add("Access-Control-Allow-Origin", "*")
        return r
    }
}
