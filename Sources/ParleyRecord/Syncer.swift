import Foundation
import Glibc

/// The thread that makes running recordings durable: every `interval` it
/// fdatasyncs their capture and events files and writes the `index.json`s
/// that changed (write, fsync, rename). It works on its own duplicates of
/// the recorder's descriptors, so the recorder thread never waits for the
/// disk to sync: a slow disk delays durability, not the draining of the
/// packet queue. Errors come back through `takeFailures` and stop the
/// recording they belong to.
final class Syncer: @unchecked Sendable {
    let interval: Double
    private let condition = NSCondition()
    /// Recording number → the syncer's own descriptors of its files.
    private var files: [Int32: [Int32]] = [:]
    /// Recording number → the index to write at the next pass.
    private var indexes: [Int32: (directory: String, index: RecordingIndex)] = [:]
    /// Recording number → errno of a failed sync or index write.
    private var failures: [Int32: Int32] = [:]
    private var busy = false
    private var stopping = false
    private var finished = false

    init(interval: Double) {
        self.interval = interval
        let t = Thread { [self] in run() }
        t.name = "parley-rec-sync"
        t.start()
    }

    /// Syncs `fd`'s file (recording `n`) from now on; false (errno set) when it cannot be duplicated.
    func add(fd: Int32, recording n: Int32) -> Bool {
        let own = dup(fd)
        guard own >= 0 else { return false }
        _ = fcntl(own, F_SETFD, FD_CLOEXEC)
        condition.withLock { files[n, default: []].append(own) }
        return true
    }

    /// Writes `index` into `directory` at the next pass (a later call replaces it).
    func write(_ index: RecordingIndex, directory: String, recording n: Int32) {
        condition.withLock { indexes[n] = (directory, index) }
    }

    /// The errors of the passes since the last call, by recording.
    func takeFailures() -> [Int32: Int32] {
        condition.withLock {
            defer { failures.removeAll() }
            return failures
        }
    }

    /// Forgets recording `n` (it is finishing: its owner syncs it last):
    /// waits out a pass under way, drops a pending index write, closes the
    /// syncer's descriptors.
    func remove(recording n: Int32) {
        let own: [Int32] = condition.withLock {
            while busy { condition.wait() }
            indexes[n] = nil
            failures[n] = nil
            return files.removeValue(forKey: n) ?? []
        }
        for fd in own { close(fd) }
    }

    /// Ends the thread (after a pass under way); call once every recording is removed.
    func shutdown() {
        condition.withLock {
            stopping = true
            condition.broadcast()
            while !finished { condition.wait() }
        }
    }

    private func run() {
        // Passes start every `interval` (not `interval` after the last one ended).
        var next = Date().addingTimeInterval(interval)
        while true {
            let work: ([Int32: [Int32]], [Int32: (directory: String, index: RecordingIndex)])? = condition.withLock {
                while !stopping && Date() < next { _ = condition.wait(until: next) }
                next = max(next.addingTimeInterval(interval), Date())
                guard !stopping else {
                    finished = true
                    condition.broadcast()
                    return nil
                }
                busy = true
                defer { indexes.removeAll() }
                return (files, indexes)
            }
            guard let (fds, pending) = work else { return }
            var errors: [Int32: Int32] = [:]
            for (n, list) in fds {
                for fd in list where fdatasync(fd) != 0 { errors[n] = errno }
            }
            for (n, w) in pending {
                do { try w.index.write(directory: w.directory) } catch RecordError.system(_, _, let e) { errors[n] = e } catch { errors[n] = EIO }
            }
            condition.withLock {
                busy = false
                failures.merge(errors) { a, _ in a }
                condition.broadcast()
            }
        }
    }
}
