import Glibc
import ParleyCore
import ParleyRTP

/// The files of one running recording; recorder thread only. Packets are
/// buffered per track and written in large `write`s; a failed write is cut
/// back to the last whole block, and the recording stops. The `Syncer`
/// makes the files durable while the recording runs; `finish` fdatasyncs
/// them itself.
final class RecordingWriter {
    let directory: String
    /// The recording's number (the `Recorder`'s key, the `Syncer`'s).
    let number: Int32
    private let syncer: Syncer
    private(set) var index: RecordingIndex
    private let state: RecordingState
    private let maxBytes: Int64
    private(set) var bytesWritten: Int64 = 0
    private(set) var stopReason: StopReason?
    private var packetsWritten = 0

    /// One track's capture file and its buffer. A class: the packet loop
    /// appends to `pending` in place, reached through the recorder's `TrackTable`.
    final class TrackFile {
        let fd: Int32
        let track: String
        let pending = WriteBuffer()
        var pendingPackets = 0
        /// Bytes on disk that form whole blocks.
        var size: Int64 = 0
        init(fd: Int32, track: String) { self.fd = fd; self.track = track }
    }
    /// Bytes buffered in every file's `pending`.
    private var pendingTotal = 0
    /// The open capture files by SSRC (the recorder's `TrackTable` points into them).
    private(set) var files: [UInt32: TrackFile] = [:]
    private var events: Int32
    private var indexDirty = false

    init(directory: String, number: Int32, syncer: Syncer, index: RecordingIndex, state: RecordingState, maxBytes: Int64) {
        self.directory = directory
        self.number = number
        self.syncer = syncer
        self.index = index
        self.state = state
        self.maxBytes = maxBytes
        events = open(directory + "/" + RecordingIndex.eventsFileName, O_WRONLY | O_APPEND | O_CLOEXEC)
        if events < 0 { fail(errno) }
        syncer.add(recording: number)
    }

    func fail(_ e: Int32) {
        if stopReason == nil { stopReason = (e == ENOSPC || e == EDQUOT) ? .diskFull : .writeFailed }
    }

    func add(_ t: RoomTrack) {
        guard stopReason == nil, files[t.ssrc] == nil, !index.tracks.contains(where: { $0.id == t.id }) else { return }
        let path = directory + "/" + t.captureFile
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return fail(errno) }
        let f = TrackFile(fd: fd, track: t.id)
        f.pending.append(CaptureFile.header)
        pendingTotal += f.pending.count
        files[t.ssrc] = f
        index.tracks.append(t)
        if !index.participants.contains(t.participant) { index.participants.append(t.participant) }
        indexDirty = true
        note(RecordingEvent(.trackAdded, participant: t.participant, track: t.id))
    }

    func note(_ e: RecordingEvent) {
        guard stopReason == nil || e.kind == .stopped else { return }
        if e.kind == .join, let p = e.participant, !index.participants.contains(p) {
            index.participants.append(p)
            indexDirty = true
        }
        if let err = writeAll(events, Array(e.line.utf8)[...]) { fail(err) }
    }

    /// Buffers one packet for `f`, one of this writer's `files`.
    func append(to f: TrackFile, rtcp: Bool, arrivalNanos: Int64, bytes: UnsafeRawBufferPointer) {
        guard stopReason == nil else { return }
        let block = CaptureFile.blockSize(packetBytes: bytes.count)
        guard bytesWritten + Int64(pendingTotal + block) <= maxBytes else {
            stopReason = .sizeCap
            return
        }
        CaptureFile.writeBlock(bytes, rtcp: rtcp, arrivalNanos: arrivalNanos, total: block, at: f.pending.reserve(block))
        f.pending.commit(block)
        pendingTotal += block
        f.pendingPackets += 1
        if rtcp { noteSenderReports(bytes, track: f.track) }
    }

    private func noteSenderReports(_ bytes: UnsafeRawBufferPointer, track: String) {
        guard let compound = try? RTCPCompoundView(parsing: bytes) else { return }
        for view in compound where view.packetType == RTCP.PacketType.senderReport {
            if let sr = try? RTCPSenderReport(view) {
                index.note(ClockMapping(ntp: sr.ntpTimestamp, rtp: sr.rtpTimestamp), track: track)
                indexDirty = true
            }
        }
    }

    /// A file's buffer is written once it holds this much (or at `flush(all: true)`).
    static let writeThreshold = 64 << 10

    /// Writes what is buffered: every file's buffer with `all`, else only
    /// those past `writeThreshold` (few large writes instead of one small
    /// write per file per pass).
    func flush(all: Bool = true) {
        for f in files.values where !f.pending.isEmpty && (all || f.pending.count >= Self.writeThreshold) {
            if let e = writeAll(f.fd, f.pending.bytes) {
                // Cut a partly written block off so the file ends on a whole one.
                _ = ftruncate(f.fd, off_t(f.size))
                fail(e)
            } else {
                f.size += Int64(f.pending.count)
                bytesWritten += Int64(f.pending.count)
                packetsWritten += f.pendingPackets
            }
            pendingTotal -= f.pending.count
            f.pending.removeAll()
            f.pendingPackets = 0
        }
    }

    func takePacketsWritten() -> Int {
        defer { packetsWritten = 0 }
        return packetsWritten
    }

    /// Hands the index to the syncer if it changed (the files it syncs on its own).
    func sync() {
        guard indexDirty, stopReason == nil else { return }
        indexDirty = false
        syncer.write(index, directory: directory, recording: number)
    }

    /// fdatasyncs every file (data and size; no timestamps) and writes the
    /// index if it changed, here and now (the end of a recording).
    private func syncNow() {
        for f in files.values where fdatasync(f.fd) != 0 { fail(errno) }
        if events >= 0 && fdatasync(events) != 0 { fail(errno) }
        if indexDirty {
            indexDirty = false
            do { try index.write(directory: directory) } catch RecordError.system(_, _, let e) { fail(e) } catch { fail(EIO) }
        }
    }

    /// Writes the rest, the `stopped` event and the final index, closes
    /// the files; returns the reason it stopped (the first one).
    func finish(_ requested: StopReason) -> StopReason {
        state.active.store(false, ordering: .relaxed)
        syncer.remove(recording: number)
        flush()
        let reason = stopReason ?? requested
        let now = wallClockNanos() / 1_000_000
        if events >= 0 { _ = writeAll(events, Array(RecordingEvent(.stopped, atMillis: now, reason: reason.rawValue).line.utf8)[...]) }
        index.stoppedAtMillis = now
        index.stopReason = reason
        indexDirty = true
        syncNow()
        for f in files.values { close(f.fd) }
        files.removeAll()
        if events >= 0 { close(events) }
        events = -1
        return reason
    }
}

/// A growable byte buffer the recorder appends capture blocks to in place
/// (no zero-fill, no bounds-checked growth per packet); it keeps its
/// capacity between writes.
final class WriteBuffer {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 1 << 16) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    var isEmpty: Bool { count == 0 }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Room for `n` more bytes at the end: write them there, then `commit(n)`.
    func reserve(_ n: Int) -> UnsafeMutableRawPointer {
        if count + n > capacity {
            let bigger = max(capacity * 2, count + n)
            let p = UnsafeMutableRawPointer.allocate(byteCount: bigger, alignment: 16)
            p.copyMemory(from: base, byteCount: count)
            base.deallocate()
            base = p
            capacity = bigger
        }
        return base + count
    }

    func commit(_ n: Int) { count += n }

    func append(_ b: [UInt8]) {
        let p = reserve(b.count)
        b.withUnsafeBytes { if let src = $0.baseAddress { p.copyMemory(from: src, byteCount: $0.count) } }
        commit(b.count)
    }

    func removeAll() { count = 0 }
}

/// The recorder's per-packet lookup: (recording, SSRC) → the track's writer
/// and file, in one flat open-addressed array of unretained references, so
/// a packet costs no `Hasher` and no reference counting. The writers own
/// what it points to: the recorder rebuilds it whenever a track file or a
/// writer comes or goes, before its next drain.
struct TrackTable {
    struct Entry {
        let recording: Int32
        let ssrc: UInt32
        let writer: Unmanaged<RecordingWriter>
        let file: Unmanaged<RecordingWriter.TrackFile>
    }
    private var slots: [Entry?]
    private let mask: Int

    init(_ writers: some Sequence<RecordingWriter> = []) {
        let writers = Array(writers)
        let count = writers.reduce(0) { $0 + $1.files.count }
        var size = 8
        while size < 2 * count { size *= 2 }  // at most half full
        slots = Array(repeating: nil, count: size)
        mask = size - 1
        for w in writers {
            for (ssrc, f) in w.files {
                var i = Self.start(w.number, ssrc, mask)
                while slots[i] != nil { i = (i + 1) & mask }
                slots[i] = Entry(recording: w.number, ssrc: ssrc, writer: .passUnretained(w), file: .passUnretained(f))
            }
        }
    }

    private static func start(_ recording: Int32, _ ssrc: UInt32, _ mask: Int) -> Int {
        let key = UInt64(UInt32(bitPattern: recording)) << 32 | UInt64(ssrc)
        return Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    func find(recording: Int32, ssrc: UInt32) -> Entry? {
        var i = Self.start(recording, ssrc, mask)
        while let e = slots[i] {
            if e.recording == recording && e.ssrc == ssrc { return e }
            i = (i + 1) & mask
        }
        return nil
    }
}
