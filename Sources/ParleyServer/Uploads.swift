import Foundation
import ParleyCore
import ParleyHTTP
import ParleyTranscode

/// `PUT /uploads`: media for transcoding jobs, streamed to DATA-DIR/uploads
/// while its SHA-256 is computed; the file is named by that hash (the upload
/// id), so the same content uploaded twice is one file.
final class UploadSink: HTTPBodySink {
    let dir: String
    let partial: String
    private var fd: Int32
    private let hasher = SHA256()
    private var size = 0

    static let uploaded = MetricsRegistry.shared.counter("parley_uploads_total", help: "Uploads stored (PUT /uploads)")
    static let bytes = MetricsRegistry.shared.counter("parley_upload_bytes_total", help: "Bytes received in upload bodies")

    /// Opens a new partial file in `dir`.
    init(dir: String) throws {
        self.dir = dir
        partial = dir + "/.partial-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TranscodeError.failed("cannot create \(partial): \(String(cString: strerror(errno)))") }
    }

    deinit { if fd >= 0 { close(fd) } }

    // On the connection's loop: the writes are to a local file, at most one read's worth each.
    func write(_ bytes: [UInt8]) throws {
        hasher.update(bytes)
        size += bytes.count
        Self.bytes.inc(bytes.count)
        try bytes.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = Glibc.write(fd, b.baseAddress! + off, b.count - off)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw TranscodeError.failed("writing the upload: \(String(cString: strerror(errno)))") }
                off += n
            }
        }
    }

    func finish(_ responder: HTTPResponder) {
        let id = SHA256.hex(hasher.finish())
        let (fd, size, partial, dir) = (self.fd, self.size, self.partial, self.dir)
        self.fd = -1
        // fsync and rename off the loop: a large upload takes a while to reach the disk.
        DispatchQueue.global().async {
            defer { close(fd) }
            guard size > 0 else {
                unlink(partial)
                return responder.respond(.error(.badRequest, "empty upload"))
            }
            guard fsync(fd) == 0 else {
                unlink(partial)
                return responder.respond(.error(.internalServerError, "cannot store the upload: \(String(cString: strerror(errno)))"))
            }
            let final = dir + "/" + id
            let existed = access(final, F_OK) == 0
            guard rename(partial, final) == 0 else {
                unlink(partial)
                return responder.respond(.error(.internalServerError, "cannot store the upload: \(String(cString: strerror(errno)))"))
            }
            Self.uploaded.inc()
            responder.respond(.json(existed ? .ok : .created, ["id": .string(id), "size": .number(Double(size))]))
        }
    }

    func abort() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(partial)
    }

    /// Whether `id` has the form of an upload id (64 lowercase hex digits).
    static func isUploadID(_ id: String) -> Bool {
        id.utf8.count == 64 && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Removes partial files a stopped server left behind.
    static func removePartials(in dir: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(".partial-") {
            unlink(dir + "/" + name)
        }
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
