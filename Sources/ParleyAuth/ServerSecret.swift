#if canImport(Glibc)
import Glibc
#endif
import ParleyCore

/// The token signing secret: 32 random bytes kept in `DATA_DIR/secret`.
public enum ServerSecret {
    public static let length = 32
    public static let fileName = "secret"

    public enum Failure: Error, CustomStringConvertible {
        case io(String, path: String, errno: Int32)
        case wrongLength(path: String, length: Int)
        case notRegularFile(path: String)
        case insecurePermissions(path: String, mode: UInt32)

        public var description: String {
            switch self {
            case .io(let op, let path, let e): return "\(op) \(path): \(String(cString: strerror(e)))"
            case .wrongLength(let path, let n): return "\(path) holds \(n) bytes, expected \(ServerSecret.length)"
        case .notRegularFile(let path): return "\(path) is not a regular file"
            case .insecurePermissions(let path, let mode):
                return "\(path) has mode \(String(mode, radix: 8)); it must not be readable by group or others (chmod 600)"
            }
        }
    }

    /// Returns the secret in `dataDir/secret`, creating the directory (0700)
    /// and the file (0600) when absent. Creation is atomic and race-free: the
    /// bytes go to a temporary file opened with O_EXCL, are fsynced, then
    /// hard-linked to the final name (link fails if another process won the
    /// race, in which case its secret is read and used). A secret readable
    /// by group or others is refused.
    public static func loadOrCreate(dataDir: String) throws(Failure) -> [UInt8] {
        try makeDirectories(dataDir)
        let path = dataDir + "/" + fileName
        if let existing = try readSecret(path) { return existing }

        let secret = SecureRandom.bytes(length)
        let suffix = SecureRandom.bytes(6)
        let tmp = path + ".tmp." + Base64.encodeURL(suffix)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .io("create", path: tmp, errno: errno) }
        defer { unlink(tmp) }
        let written = secret.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        if written != length { close(fd); throw .io("write", path: tmp, errno: writeErrno) }
        if fsync(fd) != 0 { let e = errno; close(fd); throw .io("fsync", path: tmp, errno: e) }
        close(fd)
        if link(tmp, path) != 0 {
            let e = errno
            if e == EEXIST, let theirs = try readSecret(path) { return theirs }
            throw .io("link", path: path, errno: e)
        }
        let dirfd = open(dataDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 { fsync(dirfd); close(dirfd) }
        return secret
    }

    /// The secret at `path`, or nil when the file does not exist.
    private static func readSecret(_ path: String) throws(Failure) -> [UInt8]? {
        // O_NONBLOCK: a FIFO planted at the path must not hang us; it is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .io("open", path: path, errno: errno)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io("stat", path: path, errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(path: path) }
        if st.st_mode & 0o077 != 0 { throw .insecurePermissions(path: path, mode: st.st_mode & 0o7777) }
        var buf = [UInt8](repeating: 0, count: length + 1)
        var total = 0
        while total < buf.count {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 { if errno == EINTR { continue }; throw .io("read", path: path, errno: errno) }
            if n == 0 { break }
            total += n
        }
        guard total == length else { throw .wrongLength(path: path, length: total) }
        return Array(buf.prefix(length))
    }

    /// `mkdir -p` with mode 0700 for the directories it creates.
    private static func makeDirectories(_ dir: String) throws(Failure) {
        var prefix = dir.hasPrefix("/") ? "/" : ""
        for component in dir.split(separator: "/") {
            prefix += component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw .io("mkdir", path: prefix, errno: errno)
            }
            prefix += "/"
        }
    }
}
