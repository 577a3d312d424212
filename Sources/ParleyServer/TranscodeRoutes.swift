import Foundation
import ParleyHTTP
import ParleyTranscode

/// `/hls/…` (finished ladders in DATA-DIR/hls) and the transcoding job API
/// (`POST /jobs`, `GET /jobs`, `GET /jobs/{id}`) over the worker's SQLite queue.
enum TranscodeRoutes {
    static func install(on router: HTTPRouter, dataDir: String) {
        let hlsRoot = dataDir + "/hls"
        router.add("GET", .prefix("/hls/"), sync: { req in
            guard let path = HLSFiles.resolve(urlPath: req.pathRemainder, root: hlsRoot),
                  let type = HLSFiles.contentType(forPath: path),
                  let attrs = try? FileManager.default.attributesOfItem(atPath: path),
                  (attrs[.type] as? FileAttributeType) == .typeRegular,
                  let size = (attrs[.size] as? NSNumber)?.intValue else {
                return .error(.notFound, "no such file")
            }
            var r = HTTPServerResponse(status: .ok, body: .file(path: path, offset: 0, length: size))
            r.headers.add("Content-Type", type)
            r.headers.add("Access-Control-Allow-Origin", "*")
            return r
        })
        router.add("POST", .exact("/jobs"), sync: { req in
            // The job JSON is TranscodeOptions' own form (only "input" required;
            // "ladder", "segment_seconds", "format", "preset", …), checked by its validate().
            let options: TranscodeOptions
            do {
                options = try JSONDecoder().decode(TranscodeOptions.self, from: Data(req.body))
                try options.validate()
            } catch let e as DecodingError {
                return .error(.badRequest, "expected a JSON object with \"input\" (a video file on this host): \(e.localizedDescription)")
            } catch {
                return .error(.badRequest, "\(error)")
            }
            guard FileManager.default.isReadableFile(atPath: options.input) else {
                return .error(.badRequest, "cannot read input file \(options.input)")
            }
            do {
                let q = try JobQueue.open(dataDir: dataDir)
                let id = try q.enqueue(input: options.input, options: options)
                return .json(HTTPStatus(code: 202, reason: "Accepted"), ["id": .number(Double(id)), "state": "queued"])
            } catch {
                return .error(.internalServerError, "cannot queue the job: \(error)")
            }
        })
        router.add("GET", .prefix("/jobs"), sync: { req in
            do {
                let q = try JobQueue.open(dataDir: dataDir)
                let rest = req.pathRemainder.hasPrefix("/") ? String(req.pathRemainder.dropFirst()) : req.pathRemainder
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                if rest.isEmpty {
                    return .raw(.ok, try encoder.encode(q.list()))
                }
                guard let id = Int64(rest) else { return .error(.notFound, "no such job") }
                guard let job = try q.get(id) else { return .error(.notFound, "no job \(id)") }
                return .raw(.ok, try encoder.encode(job))
            } catch {
                return .error(.internalServerError, "cannot read the job queue: \(error)")
            }
        })
    }
}

extension HTTPServerResponse {
    /// A JSON body that is already encoded.
    static func raw(_ status: HTTPStatus, _ json: Data) -> HTTPServerResponse {
        var r = HTTPServerResponse(status: status, body: .bytes(Array(json)))
        r.headers.add("Content-Type", "application/json")
        return r
    }
}
