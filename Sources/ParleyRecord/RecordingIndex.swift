import Glibc
import ParleyCore
import ParleyRTP

extension RoomTrack {
    /// The track's capture file inside the recording directory.
    public var captureFile: String { "track-\(RecordingIndex.safeName(id)).pcapng" }
}

/// One RTCP sender report's clock pair (RFC 3550 §6.4.1): the sender's
/// wall clock (NTP format) at the instant its RTP clock read `rtp`.
public struct ClockMapping: Sendable, Equatable {
    public var ntp: UInt64
    public var rtp: UInt32
    public init(ntp: UInt64, rtp: UInt32) { self.ntp = ntp; self.rtp = rtp }
}

/// `index.json`: what a recording is. Rewritten atomically (temporary file,
/// fsync, rename) when it changes; the capture files and the events log are
/// the crash-safe record, the index describes them.
public struct RecordingIndex: Sendable, Equatable {
    public static let fileName = "index.json"
    public static let eventsFileName = "events.log"

    public var id: String
    public var room: String
    /// Wall-clock start, milliseconds since the Unix epoch.
    public var startedAtMillis: Int64
    /// Participants in the order they joined the recording.
    public var participants: [String] = []
    public var tracks: [RoomTrack] = []
    /// Per track id, the first and the latest sender-report mappings (every
    /// report is in the track's capture file).
    public var clockMappings: [String: [ClockMapping]] = [:]
    public var stoppedAtMillis: Int64?
    public var stopReason: StopReason?

    public init(id: String, room: String, startedAtMillis: Int64) {
        self.id = id; self.room = room; self.startedAtMillis = startedAtMillis
    }

    /// A name safe as a file name: letters, digits, `-`, `_`; anything else becomes `_`.
    public static func safeName(_ s: String) -> String {
        String(s.unicodeScalars.map { c -> Character in
            (("0"..."9").contains(c) || ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "-" || c == "_") ? Character(c) : "_"
        })
    }

    mutating func note(_ m: ClockMapping, track: String) {
        var list = clockMappings[track] ?? []
        if list.count < 2 { list.append(m) } else { list[1] = m }
        clockMappings[track] = list
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "id": .string(id), "room": .string(room), "startedAtMillis": .number(Double(startedAtMillis)),
            "participants": .array(participants.map { .string($0) }),
            "tracks": .array(tracks.map { t in
                .object(["id": .string(t.id), "participant": .string(t.participant), "ssrc": JSONValue(t.ssrc),
                         "kind": .string(t.spec.kind.rawValue), "codec": .string(t.spec.codec), "payloadType": JSONValue(Int(t.spec.payloadType)),
                         "clockRate": JSONValue(t.spec.clockRate), "channels": JSONValue(t.spec.channels), "file": .string(t.captureFile),
                         // NTP timestamps do not fit a JSON number exactly: decimal strings.
                         "senderReports": .array((clockMappings[t.id] ?? []).map { .object(["ntp": .string(String($0.ntp)), "rtp": JSONValue($0.rtp)]) })])
            }),
        ]
        if let s = stoppedAtMillis { o["stoppedAtMillis"] = .number(Double(s)) }
        if let r = stopReason { o["stopReason"] = .string(r.rawValue) }
        return .object(o)
    }

    public init(json j: JSONValue, path: String = RecordingIndex.fileName) throws {
        func bad(_ r: String) -> RecordError { .badRecording(path: path, reason: r) }
        guard let id = j["id"]?.stringValue, let room = j["room"]?.stringValue,
              let start = j["startedAtMillis"]?.doubleValue else { throw bad("id, room or startedAtMillis missing") }
        self.init(id: id, room: room, startedAtMillis: Int64(start))
        participants = (j["participants"]?.arrayValue ?? []).compactMap(\.stringValue)
        for t in j["tracks"]?.arrayValue ?? [] {
            guard let p = t["participant"]?.stringValue, let ssrc = t["ssrc"]?.doubleValue,
                  let kind = t["kind"]?.stringValue.flatMap(MediaKind.init(rawValue:)), let codec = t["codec"]?.stringValue,
                  let pt = t["payloadType"]?.intValue, let rate = t["clockRate"]?.intValue, rate > 0 else { throw bad("a track lacks a field") }
            let spec = TrackDescription(kind: kind, codec: codec, payloadType: UInt8(truncatingIfNeeded: pt), clockRate: rate,
                                        channels: t["channels"]?.intValue ?? 1, ssrc: UInt32(ssrc))
            let track = RoomTrack(participant: p, spec: spec, ssrc: UInt32(ssrc), muted: false)
            tracks.append(track)
            clockMappings[track.id] = (t["senderReports"]?.arrayValue ?? []).compactMap { m in
                guard let ntp = m["ntp"]?.stringValue.flatMap({ UInt64($0) }), let rtp = m["rtp"]?.doubleValue else { return nil }
                return ClockMapping(ntp: ntp, rtp: UInt32(rtp))
            }
        }
        stoppedAtMillis = j["stoppedAtMillis"]?.doubleValue.map { Int64($0) }
        stopReason = j["stopReason"]?.stringValue.flatMap(StopReason.init(rawValue:))
    }

    /// Reads `DIR/index.json`.
    public static func read(directory: String) throws -> RecordingIndex {
        let path = directory + "/" + fileName
        guard let bytes = readWholeFile(path) else { throw RecordError.system(function: "open", path: path, errno: errno) }
        do { return try RecordingIndex(json: try JSONValue.parse(String(decoding: bytes, as: UTF8.self)), path: path) } catch let e as RecordError {
            throw e
        } catch { throw RecordError.badRecording(path: path, reason: "\(error)") }
    }

    /// Replaces `DIR/index.json` atomically and durably.
    func write(directory: String) throws {
        let path = directory + "/" + RecordingIndex.fileName
        let tmp = path + ".tmp"
        try writeFileDurably(tmp, Array(json.serialized.utf8))
        guard rename(tmp, path) == 0 else { throw RecordError.system(function: "rename", path: path, errno: errno) }
        syncDirectory(directory)
    }
}

/// Why a recording stopped.
public enum StopReason: String, Sendable, Equatable {
    /// Someone asked (signalling, the admin API, shutdown).
    case requested
    /// The recording reached `RecordingLimits.maxBytes`.
    case sizeCap = "size_cap"
    /// Free space on the recordings' filesystem fell below `RecordingLimits.minFreeBytes`.
    case lowDiskSpace = "low_disk_space"
    /// A write failed with ENOSPC (or EDQUOT).
    case diskFull = "disk_full"
    /// Another write or open error.
    case writeFailed = "write_failed"
}

/// One line of `events.log`: what happened in the room, when.
public struct RecordingEvent: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case started, stopped, join, leave, mute, unmute
        case trackAdded = "track_added", trackRemoved = "track_removed"
    }
    public var kind: Kind
    /// Wall clock, milliseconds since the Unix epoch.
    public var atMillis: Int64
    public var participant: String?
    public var track: String?
    /// For `stopped`: the `StopReason`.
    public var reason: String?

    public init(_ kind: Kind, atMillis: Int64 = wallClockNanos() / 1_000_000, participant: String? = nil,
                track: String? = nil, reason: String? = nil) {
        self.kind = kind; self.atMillis = atMillis; self.participant = participant; self.track = track; self.reason = reason
    }

    var line: String {
        var o: [String: JSONValue] = ["t": .number(Double(atMillis)), "event": .string(kind.rawValue)]
        if let participant { o["participant"] = .string(participant) }
        if let track { o["track"] = .string(track) }
        if let reason { o["reason"] = .string(reason) }
        return JSONValue.object(o).serialized + "\n"
    }

    /// Reads `DIR/events.log`; a torn or unreadable line (the last one
    /// after a crash) is skipped.
    public static func read(directory: String) -> [RecordingEvent] {
        guard let bytes = readWholeFile(directory + "/" + RecordingIndex.eventsFileName) else { return [] }
        var events: [RecordingEvent] = []
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            guard let j = try? JSONValue.parse(String(decoding: line, as: UTF8.self)),
                  let t = j["t"]?.doubleValue, let k = j["event"]?.stringValue.flatMap(Kind.init(rawValue:)) else { continue }
            events.append(RecordingEvent(k, atMillis: Int64(t), participant: j["participant"]?.stringValue,
                                         track: j["track"]?.stringValue, reason: j["reason"]?.stringValue))
        }
        return events
    }
}

/// Wall clock (CLOCK_REALTIME), nanoseconds since the Unix epoch.
public func wallClockNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Writes `bytes` to a new file at `path` and fsyncs it.
func writeFileDurably(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw RecordError.system(function: "open", path: path, errno: errno) }
    defer { close(fd) }
    if let e = writeAll(fd, bytes[...]) { throw RecordError.system(function: "write", path: path, errno: e) }
    guard fsync(fd) == 0 else { throw RecordError.system(function: "fsync", path: path, errno: errno) }
}

/// fsyncs a directory so a rename or a new file in it survives a crash.
func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
}
