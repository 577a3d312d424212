import Glibc
import ParleyCore
import ParleyIO
import ParleySRTP

/// What every participant of a run shares, read-only: where the server is,
/// how to reach it, what to send.
final class LoadPlan: @unchecked Sendable {
    let server: SocketAddress
    let host: String
    let path: String
    let tls: TLSContext?
    let suite: SRTPSuite
    let audio: Bool
    let video: VideoProfile?
    /// Where media goes instead of the relay's address (`--media-via`).
    let mediaVia: SocketAddress?

    init(server: SocketAddress, host: String, path: String, tls: TLSContext?, suite: SRTPSuite, audio: Bool, video: VideoProfile?,
         mediaVia: SocketAddress? = nil) {
        self.mediaVia = mediaVia
        self.server = server
        self.host = host
        self.path = path
        self.tls = tls
        self.suite = suite
        self.audio = audio
        self.video = video
    }
}

/// Counts of a run: one loop's (in ``LoadStats``), or several summed.
struct LoadCounters: Sendable {
    var started = 0, joined = 0, latched = 0, firstMedia = 0, subscriptions = 0
    /// Participants that subscribed to at least one track.
    var subscribers = 0
    var rtpSent = 0, bytesSent = 0, rtcpSent = 0, retransmitted = 0, keyframes = 0
    var rtpReceived = 0, bytesReceived = 0, duplicates = 0, reordered = 0, rtcpReceived = 0
    var nacks = 0, plis = 0, consentAnswers = 0
    var srtpFailures = 0, malformed = 0, udpErrors = 0
    var flushes = 0, ticks = 0, scheduleSkips = 0
    /// Signalling and setup errors by kind ("join: room_full", "closed: 1006").
    var errors: [String: Int] = [:]
    /// One-way latency (ns) over the whole run.
    var latency = LatencyHistogram()
    /// Connect → first media received.
    var join = LatencyHistogram()
    /// Connect → `join` reply.
    var joinReply = LatencyHistogram()
    var stunRTT = LatencyHistogram()
    /// How late the generator was for each due send (ns).
    var lateness = LatencyHistogram()

    mutating func add(_ o: LoadCounters) {
        started += o.started; joined += o.joined; latched += o.latched; firstMedia += o.firstMedia
        subscriptions += o.subscriptions; subscribers += o.subscribers
        rtpSent += o.rtpSent; bytesSent += o.bytesSent; rtcpSent += o.rtcpSent; retransmitted += o.retransmitted
        keyframes += o.keyframes; rtpReceived += o.rtpReceived; bytesReceived += o.bytesReceived
        duplicates += o.duplicates; reordered += o.reordered; rtcpReceived += o.rtcpReceived
        nacks += o.nacks; plis += o.plis; consentAnswers += o.consentAnswers; srtpFailures += o.srtpFailures
        malformed += o.malformed; udpErrors += o.udpErrors; flushes += o.flushes; ticks += o.ticks
        scheduleSkips += o.scheduleSkips
        for (k, v) in o.errors { errors[k, default: 0] += v }
        latency.add(o.latency); join.add(o.join); joinReply.add(o.joinReply); stunRTT.add(o.stunRTT); lateness.add(o.lateness)
    }

    var errorCount: Int { errors.values.reduce(0, +) }
}

/// One loop's counters. Loop-confined.
final class LoadStats {
    var c = LoadCounters()
    /// Latency since the last sample (for the live line and the timeline).
    var latencyWindow = LatencyHistogram()

    func error(_ kind: String) { c.errors[kind, default: 0] += 1 }

    @inline(__always) func recordLatency(_ ns: UInt64) {
        c.latency.record(ns)
        latencyWindow.record(ns)
    }
}

/// One loop's share of the participants, and the one timer that drives
/// them: every tick (2 ms) the participants due in that tick send what is
/// due, then each one's socket batch goes out in one `sendmmsg` (same-size
/// video packets to the relay coalesced by UDP GSO). A timer wheel of 2 ms
/// slots (about 2 s around) holds each participant once, at its next due
/// time, so a tick touches only those due. No thread and no timer per client.
final class LoadWorker {
    let loop: EventLoop
    let plan: LoadPlan
    let media: MediaSource
    let stats = LoadStats()
    var participants: [LoadParticipant] = []
    private var timer: TimerHandle?
    let socketOptions: UDPSocket.Options

    init(loop: EventLoop, plan: LoadPlan, media: MediaSource) {
        self.loop = loop
        self.plan = plan
        self.media = media
        var o = UDPSocket.Options()
        o.batchSize = 16
        o.sendBatchSize = 64
        o.maxDatagramSize = 1500
        o.receiveBufferSize = 512 << 10
        o.sendBufferSize = 512 << 10
        socketOptions = o
    }

    static let tickNanos: UInt64 = 2_000_000
    static let slots = 1024
    /// Slot `t mod slots` holds the participants (indices) due at tick `t`.
    /// Each slot's storage is reserved up front, so steady running does not allocate.
    private var wheel: [[Int]] = (0..<LoadWorker.slots).map { _ in
        var slot: [Int] = []
        slot.reserveCapacity(64)
        return slot
    }
    private var scratch: [Int] = { var a: [Int] = []; a.reserveCapacity(64); return a }()
    /// The last tick processed.
    private var cursor: UInt64 = 0

    /// Starts the tick timer. Loop only.
    func startTicking() {
        cursor = MonotonicTime.now().nanoseconds / Self.tickNanos
        timer = loop.scheduleRepeatingTimer(every: .milliseconds(2)) { [unowned self] in
            let now = MonotonicTime.now().nanoseconds
            stats.c.ticks += 1
            let target = now / Self.tickNanos
            while cursor < target {
                cursor += 1
                swap(&scratch, &wheel[Int(cursor % UInt64(Self.slots))])
                for i in scratch {
                    let p = participants[i]
                    guard p.scheduledTick == cursor else { continue } // moved earlier since
                    p.scheduledTick = 0
                    schedule(p, at: p.tick(now: now))
                }
                scratch.removeAll(keepingCapacity: true)
            }
        }
    }

    /// Puts `p` in the wheel at `due` (rounded up to a tick; beyond the
    /// wheel, at its far end, where it is looked at again). Loop only.
    func schedule(_ p: LoadParticipant, at due: UInt64) {
        guard due != .max else { return }
        var t = max((due + Self.tickNanos - 1) / Self.tickNanos, cursor + 1)
        t = min(t, cursor + UInt64(Self.slots) - 1)
        if p.scheduledTick > cursor && p.scheduledTick <= t { return } // an earlier visit is pending
        p.scheduledTick = t
        wheel[Int(t % UInt64(Self.slots))].append(p.wheelIndex)
    }

    /// Visits `p` at the next tick (its due times changed: joined, latched, published). Loop only.
    func wake(_ p: LoadParticipant) { schedule(p, at: 0) }

    /// Adds and starts a participant. Loop only.
    func add(room: String?, name: String, token: String, publishes: Bool, bindIP: String?) {
        let p = LoadParticipant(worker: self, room: room, name: name, token: token, publishes: publishes, bindIP: bindIP)
        p.wheelIndex = participants.count
        participants.append(p)
        stats.c.started += 1
        p.start()
    }

    func stopSending() { for p in participants { p.stopSending() } }

    /// Participants whose signalling connection is still open. Loop only.
    var openConnections: Int { participants.reduce(0) { $0 + ($1.client != nil ? 1 : 0) } }

    func finish() {
        if let timer { loop.cancelTimer(timer) }
        timer = nil
        for p in participants { p.finish() }
    }

    /// The counters now, and the window's latency and loss (which start over). Loop only.
    func sample() -> LoadSample {
        var s = LoadSample()
        s.c = stats.c
        var windowExpected: Int64 = 0, windowReceived: Int64 = 0
        var connected = 0
        for p in participants {
            if p.client != nil && !p.failed { connected += 1 }
            for sub in p.subscriptions.values {
                let e = sub.expected
                windowExpected += e - sub.expectedAtSample
                windowReceived += sub.received - sub.receivedAtSample
                sub.expectedAtSample = e
                sub.receivedAtSample = sub.received
            }
        }
        s.connected = connected
        s.windowExpected = windowExpected
        s.windowReceived = windowReceived
        s.latencyWindow = stats.latencyWindow
        stats.latencyWindow.reset()
        return s
    }

    /// Per-track figures for the final report: what each publisher sent
    /// (last extended sequence by SSRC) and what each subscription got. Loop only.
    func finalTracks() -> (sent: [UInt32: UInt16], received: [ReceivedTrack]) {
        var sent: [UInt32: UInt16] = [:]
        var received: [ReceivedTrack] = []
        for p in participants {
            for t in [p.audio, p.video].compactMap({ $0 }) where t.sent > 0 {
                sent[t.ssrc] = UInt16(truncatingIfNeeded: t.lastExtendedSequence)
            }
            for sub in p.subscriptions.values {
                received.append(ReceivedTrack(ssrc: sub.ssrc, firstExtended: sub.firstExtended, highestExtended: sub.highestExtended,
                                              received: sub.received,
                                              jitterSeconds: Double(sub.stats.jitter) / Double(sub.clockRate)))
            }
        }
        return (sent, received)
    }
}

/// One subscription at the end of a run.
struct ReceivedTrack: Sendable {
    var ssrc: UInt32
    var firstExtended: Int64
    var highestExtended: Int64
    var received: Int64
    var jitterSeconds: Double
}

/// Counters summed over loops at one moment, with the window since the
/// previous sample.
struct LoadSample: Sendable {
    var c = LoadCounters()
    var connected = 0
    var windowExpected: Int64 = 0, windowReceived: Int64 = 0
    var latencyWindow = LatencyHistogram()

    mutating func add(_ o: LoadSample) {
        c.add(o.c)
        connected += o.connected
        windowExpected += o.windowExpected
        windowReceived += o.windowReceived
        latencyWindow.add(o.latencyWindow)
    }
}
