import Foundation
import Glibc
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyRecord
import ParleyWeb

/// The recordings on the daemon's listener, for admin tokens
/// (docs/protocol.md "HTTP endpoints", docs/security.md "Recordings"):
///
/// - `GET /recordings`: every recording, newest first (its index without
///   the tracks, and whether it is still running);
/// - `GET /recordings/{id}`: one recording's index and its files;
/// - `GET /recordings/{id}/{file}`: one file, with `Range` and validators.
///
/// Clients name recordings by id and files by name, never by path: an id is
/// what `RecordingIndex.safeName` leaves unchanged, a file name is letters,
/// digits, `-`, `_` and `.` without a leading dot, and only a regular file
/// directly inside that recording's directory (no symlink) is served. The
/// disk work runs on the blocking pool.
enum RecordingRoutes {
    static func install(on router: HTTPRouter, directory: String, auth: BearerAuth, pool: BlockingPool) {
        router.add("GET", .exact("/recordings"), blocking: pool) { req in
            _ = try auth.require(.admin, req)
            let ids = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            let list = ids.filter(isSafeID).compactMap { try? RecordingIndex.read(directory: directory + "/" + $0) }
                .sorted { ($0.startedAtMillis, $0.id) > ($1.startedAtMillis, $1.id) }
                .map { summary($0) }
            return .json(.ok, ["recordings": .array(list)])
        }
        router.add("GET", .prefix("/recordings/"), blocking: pool) { req in
            _ = try auth.require(.admin, req)
            let parts = req.pathRemainder.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard (1...2).contains(parts.count), isSafeID(parts[0]) else { throw HTTPRefusal(.notFound, "no such recording") }
            let dir = directory + "/" + parts[0]
            guard let index = try? RecordingIndex.read(directory: dir) else { throw HTTPRefusal(.notFound, "no such recording") }
            if parts.count == 1 || parts[1].isEmpty {
                var o = summary(index).objectValue ?? [:]
                o["tracks"] = index.json["tracks"]
                o["files"] = .array(files(in: dir).map { ["name": .string($0.name), "bytes": JSONValue($0.bytes)] })
                return .json(.ok, .object(o))
            }
            let name = parts[1]
            guard isSafeFileName(name), files(in: dir).contains(where: { $0.name == name }) else {
                throw HTTPRefusal(.notFound, "no such file")
            }
            // Capture files and the index change while a recording runs; exports are rewritten by a new export.
            return .file(dir + "/" + name, contentType: contentType(name), request: req, cacheControl: "private, no-cache")
        }
    }

    static func summary(_ i: RecordingIndex) -> JSONValue {
        var o: [String: JSONValue] = ["id": .string(i.id), "room": .string(i.room), "startedAtMillis": .number(Double(i.startedAtMillis)),
                                      "participants": .array(i.participants.map { .string($0) }),
                                      "running": .bool(i.stoppedAtMillis == nil)]
        if let s = i.stoppedAtMillis { o["stoppedAtMillis"] = .number(Double(s)) }
        if let r = i.stopReason { o["stopReason"] = .string(r.rawValue) }
        return .object(o)
    }

    /// A recording id as the recorder makes them: safe as a file name, not empty, no leading dot.
    static func isSafeID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 255 && RecordingIndex.safeName(id) == id
    }

    static func isSafeFileName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 255, name.first != "." else { return false }
        return name.unicodeScalars.allSatisfy { c in
            ("0"..."9").contains(c) || ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "-" || c == "_" || c == "."
        }
    }

    /// The regular files directly in `dir` (not symlinks, not the index's temporary file), by name.
    static func files(in dir: String) -> [(name: String, bytes: Int)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.sorted().compactMap { name in
            guard isSafeFileName(name), !name.hasSuffix(".tmp") else { return nil }
            var st = stat()
            guard lstat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            return (name, Int(st.st_size))
        }
    }

    static func contentType(_ name: String) -> String {
        switch name.split(separator: ".").last ?? "" {
        case "webm": return "video/webm"
        case "mkv": return "video/x-matroska"
        case "ogg": return "audio/ogg"
        case "pcapng": return "application/x-pcapng"
        case "json": return "application/json"
        case "log": return "application/x-ndjson"
        default: return "application/octet-stream"
        }
    }
}
