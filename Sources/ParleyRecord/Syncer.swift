import CLinux
import Foundation
import Glibc

/// The thread that makes running recordings durable: every `interval` it
/// issues one `syncfs(2)` on the recordings directory's filesystem (every
/// capture file and events log of every running recording, and their
/// directory entries, in one journal commit and one device cache flush),
/// then writes the `index.json`s that changed (temporary file, fsync,
/// rename, fsync of the directory). One fdatasync per file cost a journal
/// commit and a flush each, about 100 a second for 20 recorded rooms of 4.
/// The recorder thread never waits for the disk to sync: a slow disk
/// delays durability, not the draining of the packet queue. An error stops
/// every running recording (`syncfs` cannot say whose file failed); errors
/// come back through `takeFailures`.
///
/// `syncfs` also writes back whatever else is dirty on that filesystem; on
/// a disk shared with heavy writers a pass takes longer (the recorder does
/// not wait for it) and passes then run back to back. docs/operations.md
/// says to give DATA-DIR/recordings a filesystem of its own in that case.
final class Syncer: @unchecked Sendable {
    let directory: String
    let interval: Double
    private let condition = NSCondition()
    /// The recordings being synced.
    private var running: Set<Int32> = []
    /// Recording number → the index to write at the next pass.
    private var indexes: [Int32: (directory: String, index: RecordingIndex)] = [:]
    /// Recording number → errno of a failed sync or index write.
    private var failures: [Int32: Int32] = [:]
    private var busy = false
    private var stopping = false
    private var finished = false
    // Syncer thread only: the recordings directory, opened at the first pass with a recording.
    private var directoryFD: Int32 = -1

    /// `directory`: the recordings directory (syncfs's handle on their filesystem).
    init(directory: String, interval: Double) {
        self.directory = directory
        self.interval = interval
        let t = Thread { [self] in
            parley_set_thread_name("parley-rec-sync")
            run()
        }
        t.start()
    }

    /// Syncs recording `n`'s files from the next pass on.
    func add(recording n: Int32) {
        _ = condition.withLock { running.insert(n) }
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
    /// waits out a pass under way, drops a pending index write.
    func remove(recording n: Int32) {
        condition.withLock {
            while busy { condition.wait() }
            running.remove(n)
            indexes[n] = nil
            failures[n] = nil
        }
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
            let work: (Set<Int32>, [Int32: (directory: String, index: RecordingIndex)])? = condition.withLock {
                while !stopping && Date() < next { _ = condition.wait(until: next) }
                next = max(next.addingTimeInterval(interval), Date())
                guard !stopping else {
                    finished = true
                    condition.broadcast()
                    return nil
                }
                busy = true
                defer { indexes.removeAll() }
                return (running, indexes)
            }
            guard let (recordings, pending) = work else {
                if directoryFD >= 0 { close(directoryFD) }
                return
            }
            var errors: [Int32: Int32] = [:]
            if !recordings.isEmpty {
                if directoryFD < 0 { directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
                if directoryFD < 0 || parley_syncfs(directoryFD) != 0 {
                    let e = errno
                    for n in recordings { errors[n] = e }
                }
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
