import Glibc

/// An exclusive lock on a data directory, held while the process lives:
/// one `parley serve` and one `parley worker` per DATA-DIR (each takes its
/// own lock file there). `flock` locks go away with the process, so a killed
/// daemon never leaves a stale lock; the file keeps the holder's pid only
/// to name it in the error.
public final class DirectoryLock: @unchecked Sendable {
    public struct Busy: Error, CustomStringConvertible {
        public let directory: String
        /// The pid written by the holder, if it could be read.
        public let holder: Int32?
        public let description: String
    }

    /// The lock file (`directory/name`).
    public let path: String
    private let fd: Int32

    /// Takes `directory/name` (creating it), or throws `Busy` naming the
    /// holder when another process has it. `what` names the holder's kind
    /// in the message ("parley serve").
    public init(directory: String, name: String, what: String) throws {
        path = directory + "/" + name
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw Busy(directory: directory, holder: nil, description: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            var buf = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buf, buf.count, 0)
            close(fd)
            let pid = n > 0 ? Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmingWhitespace) : nil
            guard e == EWOULDBLOCK else {
                throw Busy(directory: directory, holder: nil, description: "cannot lock \(path): \(String(cString: strerror(e)))")
            }
            throw Busy(directory: directory, holder: pid,
                       description: "data dir \(directory) is in use by another \(what)\(pid.map { " (pid \($0))" } ?? "")")
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, text, text.count, 0)
    }

    deinit { close(fd) } // releases the lock
}

extension String {
    var trimmingWhitespace: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
