import ParleyAuth
import ParleyChat
import ParleyWeb
import Foundation
import Synchronization
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyTranscode

/// Chat attachments on the daemon's listener (docs/protocol.md "Attachments"):
///
/// - `PUT /media` (any valid token): the body streamed to DATA-DIR/media
///   while its SHA-256 is computed (the same `HashingFileWriter` as
///   `PUT /uploads`), named by that hash, so the same bytes are stored once;
///   fsync, rename and the thumbnail (an image scaled down, a video's poster
///   frame, through ParleyMedia) on the blocking pool; the owner recorded in
///   the chat store;
/// - `GET /media/{id}` and `GET /media/{id}/thumbnail`: only for the uploader
///   and members of a conversation with a message that carries it, with
///   ranges and validators (`HTTPServerResponse.file`); anyone else gets the
///   same 404 as for an id that does not exist.
enum ChatMediaRoutes {
    /// Content types served as given; anything else is stored and served as
    /// `application/octet-stream` (no HTML or script from our origin).
    static let servedTypes = ["image/", "video/", "audio/", "application/pdf", "text/plain"]

    static func contentType(_ header: String?) -> String {
        guard let h = header?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased(), h.utf8.count <= 100,
              h.utf8.allSatisfy({ $0 == 0x2F || $0 == 0x2D || $0 == 0x2E || $0 == 0x2B || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) }),
              servedTypes.contains(where: { h.hasPrefix($0) }), h.split(separator: "/").count == 2 else {
            return "application/octet-stream"
        }
        return h
    }

    static func install(on router: HTTPRouter, config: ServerConfig, pool: BlockingPool, chat: ChatStore) throws {
        let dir = config.dataDir + "/media"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        guard let real = HLSFiles.realPath(dir) else { throw ConfigError(key: "data-dir", "cannot resolve \(dir)") }
        let space = MediaSpace(dir: real, maxTotal: config.chatMediaMaxTotalBytes)
        let auth = BearerAuth(secret: try ServerSecret.loadOrCreate(dataDir: config.dataDir))
        let maxBytes = config.chatMediaMaxBytes, quota = config.chatMediaMaxBytesPerUser
        _ = (MediaSink.stored, MediaSink.deduplicated, MediaSink.refusedFull, MediaSink.refusedQuota, MediaSpace.deleted)  // on /metrics from the start
        MediaSpace.sweep(chat, space, every: 60)

        router.addStreaming("PUT", .exact("/media")) { req in
            let claims: AuthClaims
            do throws(HTTPRefusal) { claims = try auth.require(.user, req) } catch { return .respond(error.response) }
            var promised = 0
            if case .contentLength(let n) = req.head.bodyLength, n <= maxBytes { promised = n }
            do {
                return .stream(maxBytes: maxBytes, sink: try MediaSink(space: space, chat: chat, owner: claims.subject, quota: quota,
                                                                      contentType: contentType(req.head.headers["Content-Type"]),
                                                                      expected: promised, pool: pool, loop: req.loop))
            } catch let r as HTTPRefusal { return .respond(r.response) } catch {
                return .respond(.error(.internalServerError, "\(error)"))
            }
        }

        // The uploader gives its attachment up; the bytes go once nobody owns them and no stored message carries them.
        router.add("DELETE", .prefix("/media/")) { req, responder in
            guard let claims = auth.admit(.user, req, responder) else { return }
            let id = req.pathRemainder
            guard UploadSink.isUploadID(id) else { return responder.respond(.error(.notFound, "no such media")) }
            do {
                try chat.deleteMedia(id, owner: claims.subject) { result in
                    switch result {
                    case .success(nil): responder.respond(.error(.notFound, "no such media of yours"))
                    case .success(let gone?):
                        space.remove(gone)
                        responder.respond(HTTPServerResponse(status: .noContent))
                    case .failure(let e): responder.respond(.error(.internalServerError, "\(e)"))
                    }
                }
            } catch {
                responder.respond(.busy)
            }
        }

        router.add("GET", .prefix("/media/")) { req, responder in
            guard let claims = auth.admit(.user, req, responder, allowQueryToken: true) else { return }
            let parts = req.pathRemainder.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            let missing = HTTPServerResponse.error(.notFound, "no such media")
            guard let id = parts.first, UploadSink.isUploadID(id), parts.count == 1 || parts == [id, "thumbnail"] else {
                return responder.respond(missing)
            }
            let thumbnail = parts.count == 2
            do {
                try chat.media(id, readableBy: claims.subject) { result in
                    guard case .success(let m?) = result, !thumbnail || m.thumbnail else { return responder.respond(missing) }
                    var r = HTTPServerResponse.file(real + "/" + id + (thumbnail ? ".jpg" : ""),
                                                    contentType: thumbnail ? "image/jpeg" : m.contentType, request: req,
                                                    cacheControl: "private, max-age=31536000, immutable")
                    r.headers.add("X-Content-Type-Options", "nosniff")
                    r.headers.add("Content-Security-Policy", "sandbox")
                    responder.respond(r)
                }
            } catch {
                responder.respond(.busy)
            }
        }
    }
}

/// Bytes in DATA-DIR/media (stored, and reserved by uploads in progress) against `chat-media-max-total-bytes`.
final class MediaSpace: Sendable {
    let dir: String
    let maxTotal: Int
    private let used: Mutex<Int>

    init(dir: String, maxTotal: Int) {
        self.dir = dir
        self.maxTotal = maxTotal
        var total = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            if name.hasPrefix(".partial-") { unlink(dir + "/" + name); continue }
            var st = stat()
            if stat(dir + "/" + name, &st) == 0 { total += Int(st.st_size) }
        }
        used = Mutex(total)
    }

    func reserve(_ bytes: Int) throws(HTTPRefusal) {
        let fits = used.withLock { u in
            guard u + bytes <= maxTotal else { return false }
            u += bytes
            return true
        }
        guard fits else {
            MediaSink.refusedFull.inc()
            throw HTTPRefusal(.insufficientStorage, "no room for this attachment: the server's media storage is full (chat-media-max-total-bytes)")
        }
    }

    func release(_ bytes: Int) { used.withLock { $0 -= bytes } }

    static let deleted = MetricsRegistry.shared.counter("parley_chat_media_deleted_total",
                                                        help: "Chat attachments removed: nobody owns them and no stored message carries them")

    /// Removes the files of media `ids` (and thumbnails), giving their bytes back.
    /// Runs where the store's completion runs (its writer thread), never on a loop.
    func remove(_ ids: [String]) {
        for id in ids {
            for path in [dir + "/" + id, dir + "/" + id + ".jpg"] {
                var st = stat()
                if stat(path, &st) == 0, unlink(path) == 0 { release(Int(st.st_size)) }
            }
            Self.deleted.inc()
        }
    }

    /// Removes media nobody owns and no stored message carries any more, now and every `seconds` until the store closes.
    static func sweep(_ chat: ChatStore, _ space: MediaSpace, every seconds: Double) {
        do {
            try chat.sweepMedia { result in
                if case .success(let ids) = result { space.remove(ids) }
                DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [weak chat] in
                    if let chat { sweep(chat, space, every: seconds) }
                }
            }
        } catch {
            // The store is closed (or its queue full: the next upload or delete will do).
        }
    }
}

/// `PUT /media`'s body: to a partial file on the loop, then stored on the pool.
final class MediaSink: HTTPBodySink {
    let space: MediaSpace
    let chat: ChatStore
    let owner: String
    let quota: Int
    let contentType: String
    let pool: BlockingPool
    let loop: EventLoop
    private let file: HashingFileWriter

    static let stored = MetricsRegistry.shared.counter("parley_chat_media_total", help: "Chat attachments stored by PUT /media (new bytes)")
    static let deduplicated = MetricsRegistry.shared.counter("parley_chat_media_deduplicated_total",
                                                            help: "PUT /media bodies already stored (nothing new written)")
    static let refusedFull = MetricsRegistry.shared.counter("parley_chat_media_refused_total",
                                                           help: "PUT /media refused with 507 (chat-media-max-total-bytes)")
    static let refusedQuota = MetricsRegistry.shared.counter("parley_chat_media_quota_refused_total",
                                                            help: "PUT /media refused with 507 because the uploader owns chat-media-max-bytes-per-user already")

    init(space: MediaSpace, chat: ChatStore, owner: String, quota: Int, contentType: String, expected: Int, pool: BlockingPool, loop: EventLoop) throws {
        (self.space, self.chat, self.owner, self.quota, self.contentType, self.pool, self.loop) = (space, chat, owner, quota, contentType, pool, loop)
        file = try HashingFileWriter(directory: space.dir, expected: expected, reserve: { try space.reserve($0) }, release: { space.release($0) })
    }

    func write(_ bytes: [UInt8]) throws { try file.write(bytes) }

    func finish(_ responder: HTTPResponder) {
        let (fd, id, size, reserved) = file.finish()
        let (partial, space, dir, type, chat, owner, quota) = (file.partial, space, space.dir, contentType, chat, owner, quota)
        do {
            try pool.run(on: loop, { () throws -> (existed: Bool, thumbnail: Bool) in
                defer { close(fd) }
                guard size > 0 else { throw HTTPRefusal(.badRequest, "empty attachment") }
                guard fsync(fd) == 0 else { throw HTTPRefusal(.internalServerError, "cannot store the attachment: \(String(cString: strerror(errno)))") }
                let path = dir + "/" + id
                let existed = access(path, F_OK) == 0
                if existed { unlink(partial) } else if rename(partial, path) != 0 {
                    throw HTTPRefusal(.internalServerError, "cannot store the attachment: \(String(cString: strerror(errno)))")
                }
                var thumbnail = access(path + ".jpg", F_OK) == 0
                if !existed, type.hasPrefix("image/") || type.hasPrefix("video/") {
                    thumbnail = (try? PosterFrame.write(from: path, to: path + ".jpg")) != nil
                }
                var st = stat()
                space.release(reserved - (existed ? 0 : size) - (thumbnail && !existed && stat(path + ".jpg", &st) == 0 ? -Int(st.st_size) : 0))
                return (existed, thumbnail)
            }, then: { result in
                switch result {
                case .failure(let e):
                    unlink(partial)
                    space.release(reserved)
                    responder.respond((e as? HTTPRefusal)?.response ?? .error(.internalServerError, "\(e)"))
                case .success(let s):
                    (s.existed ? Self.deduplicated : Self.stored).inc()
                    do {
                        try chat.registerMedia(id, size: size, contentType: type, thumbnail: s.thumbnail, owner: owner, quota: quota) { r in
                            switch r {
                            case .success(let m):
                                responder.respond(.json(s.existed ? .ok : .created, [
                                    "id": .string(id), "size": JSONValue(size), "contentType": .string(m.contentType),
                                    "thumbnail": .bool(m.thumbnail), "deduplicated": .bool(s.existed),
                                ]))
                            case .failure(ChatRefusal.mediaQuota(let limit, let stored)):
                                Self.refusedQuota.inc()
                                if !s.existed && !stored { space.remove([id]) }  // new bytes nobody else has: not kept
                                responder.respond(.error(.insufficientStorage,
                                                         "no room for this attachment: you have \(limit) bytes of attachments already (chat-media-max-bytes-per-user); delete some with DELETE /media/{id}"))
                            case .failure(let e): responder.respond(.error(.internalServerError, "cannot record the attachment: \(e)"))
                            }
                        }
                    } catch {
                        responder.respond(.busy)
                    }
                }
            })
        } catch {
            close(fd)
            unlink(partial)
            space.release(reserved)
            responder.respond(.busy)
        }
    }

    func abort() { file.discard() }
}
