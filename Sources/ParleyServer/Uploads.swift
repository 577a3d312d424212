import ParleyAuth
import ParleyWeb
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyTranscode
import Synchronization

/// DATA-DIR/uploads and who owns what in it. Bytes stored and bytes still
/// arriving count against `uploads-max-total-bytes`, and, per token subject,
/// against `uploads-max-bytes-per-subject`. Identical content is one file
/// (charged once to the total) owned by every subject that uploaded it (and
/// charged to each), so no subject's quota depends on what others do. Owners
/// are rows of the job queue's `upload_owners` table; the usage is counted
/// from the files and those rows at start, so a restart keeps it.
final class UploadStore: Sendable {
    /// Real path.
    let dir: String
    let maxTotal: Int
    let maxPerSubject: Int
    private let queue: any JobQueue

    struct Usage {
        /// Bytes of stored uploads plus bytes reserved by uploads in progress.
        var total = 0
        var stored = 0
        /// Per subject: bytes of the uploads it owns plus its reservations.
        var charged: [String: Int] = [:]

        mutating func charge(_ subject: String, _ bytes: Int) {
            charged[subject, default: 0] += bytes
            if charged[subject] == 0 { charged[subject] = nil }
        }
    }
    /// The counters (taken per body chunk, so held only for arithmetic).
    private let usage = Mutex(Usage())
    /// Serializes what changes files and owners together: storing, deleting,
    /// and queueing a job on an upload (so none is deleted under a new job).
    private let ownership = Mutex(())

    static let storedBytes = MetricsRegistry.shared.gauge("parley_upload_stored_bytes",
                                                          help: "Bytes of stored uploads in DATA-DIR/uploads (uploads-max-total-bytes caps them)")
    static let reasons = ["total_cap", "subject_cap"]
    static func refusals(_ reason: String) -> Counter {
        MetricsRegistry.shared.counter("parley_uploads_refused_total", help: "PUT /uploads refused with 507, by the cap it would pass",
                                       labels: [("reason", reason)])
    }

    init(dir: String, queue: any JobQueue, maxTotal: Int, maxPerSubject: Int) throws {
        guard let real = HLSFiles.realPath(dir) else { throw ConfigError(key: "data-dir", "cannot resolve \(dir)") }
        self.dir = real
        self.queue = queue
        self.maxTotal = maxTotal
        self.maxPerSubject = maxPerSubject
        var sizes: [String: Int] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: real)) ?? [] {
            if name.hasPrefix(".partial-") { unlink(real + "/" + name); continue }
            var st = stat()
            if UploadSink.isUploadID(name), stat(real + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { sizes[name] = Int(st.st_size) }
        }
        var u = Usage()
        u.stored = sizes.values.reduce(0, +)
        u.total = u.stored
        for o in try queue.uploadOwnerships() {
            // An owner of a file removed by hand owns nothing.
            guard let size = sizes[o.id] else { try queue.removeUploadOwners(o.id); continue }
            u.charge(o.owner, size)
        }
        usage.withLock { [u] in $0 = u }
        Self.storedBytes.set(u.stored)
    }

    /// Holds `bytes` more for an upload by `subject` in progress, or throws a
    /// 507 naming the cap it would pass.
    func reserve(_ bytes: Int, for subject: String) throws(HTTPRefusal) {
        let (t, c, fits) = usage.withLock { u in
            let (t, c) = (u.total, u.charged[subject, default: 0])
            let fits = t + bytes <= maxTotal && c + bytes <= maxPerSubject
            if fits {
                u.total = t + bytes
                u.charged[subject] = c + bytes
            }
            return (t, c, fits)
        }
        if fits { return }
        if t + bytes > maxTotal {
            Self.refusals("total_cap").inc()
            throw HTTPRefusal(.insufficientStorage,
                              "no room for this upload: the server's upload storage is full (uploads-max-total-bytes, \(maxTotal) bytes)")
        }
        Self.refusals("subject_cap").inc()
        throw HTTPRefusal(.insufficientStorage,
                          "this upload would take your uploads past \(maxPerSubject) bytes (uploads-max-bytes-per-subject; "
                          + "you hold \(c)); free some with DELETE /uploads/ID")
    }

    func release(_ bytes: Int, for subject: String) {
        usage.withLock { u in
            u.total -= bytes
            u.charge(subject, -bytes)
        }
    }

    /// Moves a finished upload's partial file to its id and records `subject`
    /// as an owner; its reservation becomes the stored size. Returns whether
    /// the content was already stored.
    func store(partial: String, id: String, size: Int, reserved: Int, for subject: String) throws -> Bool {
        try ownership.withLock { _ throws in try storeOwned(partial: partial, id: id, size: size, reserved: reserved, for: subject) }
    }

    private func storeOwned(partial: String, id: String, size: Int, reserved: Int, for subject: String) throws -> Bool {
        let final = dir + "/" + id
        let existed = access(final, F_OK) == 0
        let newOwner: Bool
        do {
            guard rename(partial, final) == 0 else { throw TranscodeError.failed(String(cString: strerror(errno))) }
            do { newOwner = try queue.addUploadOwner(id, owner: subject, size: size) } catch {
                if !existed { unlink(final) }
                throw error
            }
        } catch {
            unlink(partial)
            release(reserved, for: subject)
            throw error
        }
        let stored = usage.withLock { u in
            let added = existed ? 0 : size
            u.stored += added
            u.total += added - reserved
            u.charge(subject, (newOwner ? size : 0) - reserved)
            return u.stored
        }
        Self.storedBytes.set(stored)
        return existed
    }

    /// `DELETE /uploads/{id}`: drops `subject`'s ownership (an `adm` token,
    /// nil, drops everyone's); the file goes when no owner is left. Someone
    /// else's upload is "no such upload"; one that a queued or running job
    /// reads is refused with 409.
    func delete(_ id: String, by subject: String?) throws {
        let missing = HTTPRefusal(.notFound, "no such upload")
        guard UploadSink.isUploadID(id) else { throw missing }
        try ownership.withLock { _ throws in try deleteOwned(id, by: subject, missing: missing) }
    }

    private func deleteOwned(_ id: String, by subject: String?, missing: HTTPRefusal) throws {
        let path = dir + "/" + id
        var st = stat()
        let size = stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG ? Int(st.st_size) : nil
        let owners = try queue.uploadOwners(id)
        guard let size, subject.map(owners.contains) ?? true else { throw missing }
        if try queue.activeCount(input: path, source: "upload:" + id) > 0 {
            throw HTTPRefusal(.conflict, "a queued or running job reads this upload; delete it when the job has finished")
        }
        let removed = try queue.removeUploadOwners(id, owner: subject)
        let unlinked = owners.count == removed.count && unlink(path) == 0
        let stored = usage.withLock { u in
            for o in removed { u.charge(o, -size) }
            if unlinked {
                u.stored -= size
                u.total -= size
            }
            return u.stored
        }
        if unlinked { Self.storedBytes.set(stored) }
    }

    /// Runs `body` (which queues a job on upload `id` if its owners allow)
    /// with the owners, holding deletions off meanwhile.
    func using<T: Sendable>(_ id: String, _ body: (_ owners: [String]) throws -> T) throws -> T {
        try ownership.withLock { _ throws in try body(try queue.uploadOwners(id)) }
    }
}

/// `PUT /uploads`: media for transcoding jobs, streamed to DATA-DIR/uploads
/// while its SHA-256 is computed; the file is named by that hash (the upload
/// id), so the same content uploaded twice is one file. Its bytes are held
/// against the store's caps as they arrive (all of a promised Content-Length
/// at once), so a body that would pass one is refused (507) and its partial
/// file removed. The writes happen on the connection's loop; the `fsync`
/// and the store at the end on `pool`, which answers back on that loop.
final class UploadSink: HTTPBodySink {
    let store: UploadStore
    let pool: BlockingPool
    /// The connection's loop.
    let loop: EventLoop
    let subject: String
    private let file: HashingFileWriter

    static let uploaded = MetricsRegistry.shared.counter("parley_uploads_total", help: "Uploads stored (PUT /uploads)")
    static let bytes = MetricsRegistry.shared.counter("parley_upload_bytes_total", help: "Bytes received in upload bodies")

    /// Holds `expected` bytes for `subject` (throws the 507 when they do not
    /// fit) and opens a new partial file.
    init(store: UploadStore, subject: String, expected: Int, pool: BlockingPool, loop: EventLoop) throws {
        self.store = store
        self.pool = pool
        self.loop = loop
        self.subject = subject
        file = try HashingFileWriter(directory: store.dir, expected: expected, reserve: { try store.reserve($0, for: subject) },
                                     release: { store.release($0, for: subject) })
    }

    // On the connection's loop: the writes are to a local file, at most one read's worth each.
    func write(_ bytes: [UInt8]) throws {
        try file.write(bytes)
        Self.bytes.inc(bytes.count)
    }

    func finish(_ responder: HTTPResponder) {
        let (fd, id, size, reserved) = file.finish()
        let (partial, store, subject) = (file.partial, self.store, self.subject)
        @Sendable func discard() {
            close(fd)
            unlink(partial)
            store.release(reserved, for: subject)
        }
        // fsync and rename off the loop: a large upload takes a while to reach the disk.
        do {
            try pool.run(on: loop, { () -> HTTPServerResponse in
                func fail(_ status: HTTPStatus, _ message: String) -> HTTPServerResponse {
                    discard()
                    return .error(status, message)
                }
                guard size > 0 else { return fail(.badRequest, "empty upload") }
                guard fsync(fd) == 0 else { return fail(.internalServerError, "cannot store the upload: \(String(cString: strerror(errno)))") }
                close(fd)
                let existed: Bool
                do { existed = try store.store(partial: partial, id: id, size: size, reserved: reserved, for: subject) } catch {
                    return .error(.internalServerError, "cannot store the upload: \(error)")
                }
                Self.uploaded.inc()
                return .json(existed ? .ok : .created, ["id": .string(id), "size": .number(Double(size))])
            }, then: { responder.respond((try? $0.get()) ?? .error(.internalServerError, "cannot store the upload")) })
        } catch {
            discard()
            responder.respond(.busy)
        }
    }

    func abort() { file.discard() }

    /// Whether `id` has the form of an upload id (64 lowercase hex digits).
    static func isUploadID(_ id: String) -> Bool {
        id.utf8.count == 64 && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// A request body streamed to a new partial file in `directory` while its
/// SHA-256 is computed, on the connection's loop (local writes of at most
/// one read each), with the bytes it holds reserved against the store's
/// caps as they come (`reserve` throws the refusal when they do not fit;
/// all of a promised Content-Length at once): the part that
/// content-addressed uploads share (`PUT /uploads`, `PUT /media`). The
/// owner finishes it (fsync, rename to the id, the reservation settled) off
/// the loop, or discards it (the file removed, the reservation released).
final class HashingFileWriter {
    let partial: String
    private var fd: Int32
    private let hasher = SHA256()
    private(set) var size = 0
    /// Bytes held against the caps.
    private var reserved: Int
    private let reserve: (Int) throws -> Void
    private let release: (Int) -> Void

    init(directory: String, expected: Int, reserve: @escaping (Int) throws -> Void, release: @escaping (Int) -> Void) throws {
        try reserve(expected)
        (reserved, self.reserve, self.release) = (expected, reserve, release)
        partial = directory + "/.partial-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            release(expected)
            throw HTTPRefusal(.internalServerError, "cannot create \(partial): \(String(cString: strerror(errno)))")
        }
    }

    deinit { discard() }

    func write(_ bytes: [UInt8]) throws {
        if size + bytes.count > reserved {
            try reserve(size + bytes.count - reserved)
            reserved = size + bytes.count
        }
        hasher.update(bytes)
        size += bytes.count
        if let e = writeAll(fd, bytes) { throw HTTPRefusal(.internalServerError, "writing the upload: \(String(cString: strerror(e)))") }
    }

    /// The open file (the caller fsyncs and closes it), the content's id (hex SHA-256) and size, and the bytes
    /// reserved (the caller settles them).
    func finish() -> (fd: Int32, id: String, size: Int, reserved: Int) {
        defer { fd = -1 }
        return (fd, Hex.encode(hasher.finish()), size, reserved)
    }

    /// Closes and removes the partial file and releases the reservation (unless `finish` handed them over).
    func discard() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(partial)
        release(reserved)
    }
}

/// Where a job's input may come from: an upload, or a file by relative name
/// inside one of the operator's `transcode-input-dirs`. Every way of not
/// being one (outside the directories, `..`, a symlink that leads out, a
/// missing or unreadable file, an unknown upload) gets the same refusal, so
/// a client learns nothing about what exists on the host.
struct JobInputs: Sendable {
    /// Real paths.
    let uploadsDir: String
    let inputDirs: [String]

    static let refusal = HTTPRefusal(.badRequest, "input: not an upload id or a readable file in the transcode input directories")

    init(uploadsDir: String, inputDirs: [String]) throws {
        guard let u = HLSFiles.realPath(uploadsDir) else { throw ConfigError(key: "data-dir", "cannot resolve \(uploadsDir)") }
        self.uploadsDir = u
        self.inputDirs = try inputDirs.map { d in
            guard let r = HLSFiles.realPath(d), Self.isDirectory(r) else {
                throw ConfigError(key: "transcode-input-dirs", "\(d) is not a directory")
            }
            return r
        }
    }

    /// The real path of an upload's file.
    func upload(_ id: String) throws(HTTPRefusal) -> String {
        guard UploadSink.isUploadID(id) else { throw Self.refusal }
        return try readable(uploadsDir + "/" + id, inside: uploadsDir)
    }

    /// The real path of `name` inside the first input directory that has it.
    func file(named name: String) throws(HTTPRefusal) -> String {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !name.isEmpty, !name.hasPrefix("/"), !name.contains("\0"), !parts.contains(where: { $0 == ".." }) else {
            throw Self.refusal
        }
        for dir in inputDirs {
            if let p = try? readable(dir + "/" + name, inside: dir) { return p }
        }
        throw Self.refusal
    }

    private func readable(_ path: String, inside dir: String) throws(HTTPRefusal) -> String {
        guard let real = HLSFiles.realPath(path), real.hasPrefix(dir + "/") else { throw Self.refusal }
        var st = stat()
        guard stat(real, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Glibc.access(real, R_OK) == 0 else { throw Self.refusal }
        return real
    }

    private static func isDirectory(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}
