import Foundation
import Glibc
import ParleyAuth
import ParleyCore
import ParleyIO
import ParleyProtocol

/// Runs `parley load media`: starts the participants over the ramp on a
/// few event loops, samples every second, stops the media, lets it drain,
/// and reports.
public enum MediaLoad {
    /// How long receivers keep counting after the senders stop.
    static let drain = Duration.milliseconds(600)

    /// Runs the load described by `o`; `live` gets one line a second (and
    /// the ramp's progress). Throws for what stops a run from starting (a
    /// bad URL, no TLS context); everything that happens during the run
    /// ends up in the report.
    public static func run(_ o: MediaLoadOptions, live: (String) -> Void) throws -> LoadReport {
        let url = try ServerURL(o.url)
        let hostIP = url.host == "localhost" ? "127.0.0.1" : url.host
        guard let server = SocketAddress(ip: hostIP, port: url.port) else {
            throw LoadArgumentError.bad("\(url.host) is not an IP address")
        }
        let tls: TLSContext? = url.secure ? try TLSContext.client(pinnedSHA256: o.fingerprint) : nil
        let plan = LoadPlan(server: server, host: url.host, path: url.path, tls: tls, suite: o.suite, audio: o.audio, video: o.video,
                            mediaVia: o.mediaVia.flatMap { SocketAddress($0) })
        let media = try MediaSource()
        let group = try EventLoopGroup(numberOfThreads: o.loops, logger: Logger(label: "parley.load", level: .error))
        defer { group.syncShutdownGracefully() }
        let workers = try group.loops.map { loop in
            try loop.submit { () -> LoadWorkerBox in
                let w = LoadWorker(loop: loop, plan: plan, media: media)
                w.startTicking()
                return LoadWorkerBox(w)
            }
        }
        let tokens = mintTokens(o)
        let usageStart = CPUUsage.now()
        let wallStart = MonotonicTime.now()
        var timeline: [LoadReport.Second] = []
        var previous = LoadSample()
        var previousCPU = usageStart
        var previousAt = wallStart

        func sample(_ phase: String) -> LoadSample {
            var s = LoadSample()
            for w in workers { if let x = try? w.worker.loop.submit({ w.worker.sample() }) { s.add(x) } }
            let now = MonotonicTime.now()
            let cpu = CPUUsage.now()
            let dt = max(1e-3, now.since(previousAt).seconds)
            let second = LoadReport.Second(
                t: now.since(wallStart).seconds, participants: s.c.started, connected: s.connected, mediaFlowing: s.c.firstMedia,
                sentPacketsPerSecond: Double(s.c.rtpSent - previous.c.rtpSent) / dt,
                receivedPacketsPerSecond: Double(s.c.rtpReceived - previous.c.rtpReceived) / dt,
                sentBitsPerSecond: Double(s.c.bytesSent - previous.c.bytesSent) * 8 / dt,
                receivedBitsPerSecond: Double(s.c.bytesReceived - previous.c.bytesReceived) * 8 / dt,
                lossPercent: s.windowExpected > 0 ? Double(max(0, s.windowExpected - s.windowReceived)) * 100 / Double(s.windowExpected) : 0,
                p99Milliseconds: s.latencyWindow.percentile(0.99).map { Double($0) / 1e6 },
                errors: s.c.errorCount, cpuPercent: cpu.seconds(since: previousCPU) * 100 / dt, phase: phase)
            timeline.append(second)
            previous = s
            previousCPU = cpu
            previousAt = now
            return s
        }

        // Ramp: participant i starts at i × ramp / N, on loop i mod loops.
        let n = o.participants
        let rampNanos = UInt64(max(0, o.ramp.seconds) * 1e9)
        var next = 0
        var nextSample = wallStart.adding(.seconds(1))
        while next < n {
            let now = MonotonicTime.now()
            let elapsed = now.nanoseconds - wallStart.nanoseconds
            var due = n
            if rampNanos > 0 { due = min(n, Int(Double(elapsed) / Double(rampNanos) * Double(n)) + 1) }
            var byLoop: [[StartRequest]] = Array(repeating: [], count: workers.count)
            while next < due {
                let room = next / o.perRoom, j = next % o.perRoom
                let bind = o.bind.isEmpty ? nil : o.bind[next % o.bind.count]
                // Tokens from a file name their own rooms (and users).
                byLoop[next % workers.count].append(StartRequest(room: o.secret == nil ? nil : "\(o.roomPrefix)-\(room)", name: "\(o.roomPrefix)-\(room)-\(j)",
                                                                 token: tokens[next], publishes: j < o.publishers, bindIP: bind))
                next += 1
            }
            for (i, batch) in byLoop.enumerated() where !batch.isEmpty {
                let w = workers[i]
                _ = w.worker.loop.execute { for r in batch { w.worker.add(room: r.room, name: r.name, token: r.token, publishes: r.publishes, bindIP: r.bindIP) } }
            }
            if now >= nextSample {
                _ = sample("ramp")
                live(progress(next, of: n))
                nextSample = nextSample.adding(.seconds(1))
            }
            if next < n { usleep(10_000) }
        }
        // Media for `duration` after the last participant started.
        let end = MonotonicTime.now().adding(o.duration)
        while true {
            let now = MonotonicTime.now()
            if now >= end { break }
            let wake = min(end, nextSample)
            usleep(UInt32(max(1000, min(1_000_000, Int64(wake.nanoseconds) - Int64(now.nanoseconds)) / 1000)))
            if MonotonicTime.now() >= nextSample {
                let s = sample("run")
                live(liveLine(timeline.last!, s))
                nextSample = nextSample.adding(.seconds(1))
            }
        }
        let mediaSeconds = MonotonicTime.now().since(wallStart).seconds
        for w in workers { _ = w.worker.loop.execute { w.worker.stopSending() } }
        usleep(UInt32(drain.seconds * 1e6))
        let final = sample("drain")
        var sent: [UInt32: UInt16] = [:]
        var received: [ReceivedTrack] = []
        for w in workers {
            if let t = try? w.worker.loop.submit({ () -> FinalTracks in let x = w.worker.finalTracks(); return FinalTracks(sent: x.sent, received: x.received) }) {
                sent.merge(t.sent) { a, _ in a }
                received += t.received
            }
        }
        let cpu = CPUUsage.now().seconds(since: usageStart)
        for w in workers { _ = w.worker.loop.execute { w.worker.finish() } }
        // Until every participant has left (its `leave` answered) or 3 s.
        let leaveDeadline = MonotonicTime.now().adding(.seconds(3))
        while MonotonicTime.now() < leaveDeadline {
            let open = workers.reduce(0) { n, w in n + ((try? w.worker.loop.submit { w.worker.openConnections }) ?? 0) }
            if open == 0 { break }
            usleep(20_000)
        }
        return LoadReport(options: o, sample: final, sent: sent, received: received, timeline: timeline,
                          wallSeconds: mediaSeconds, generatorCPUSeconds: cpu)
    }

    static func mintTokens(_ o: MediaLoadOptions) -> [String] {
        guard let secret = o.secret else { return Array(o.tokens.prefix(o.participants)) }
        let now = Int64(Date().timeIntervalSince1970)
        let ttl = Int64(o.duration.seconds + o.ramp.seconds) + 3600
        return (0..<o.participants).map { i in
            let room = i / o.perRoom, j = i % o.perRoom
            let claims = TokenClaims(subject: "\(o.roomPrefix)-\(room)-\(j)", room: "\(o.roomPrefix)-\(room)", issuedAt: now,
                                     expiresAt: now + ttl, canPublish: j < o.publishers)
            return JWT.sign(claims, secret: secret)
        }
    }

    static func progress(_ done: Int, of total: Int) -> String {
        let width = 30
        let filled = total > 0 ? done * width / total : width
        return "ramp [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total) participants"
    }

    static func liveLine(_ s: LoadReport.Second, _ sample: LoadSample) -> String {
        let p99 = s.p99Milliseconds.map { String(format: "%.2f ms", $0) } ?? "-"
        return String(format: "t=%3.0fs participants %d (media %d) sent %.0f pkt/s recv %.0f pkt/s loss %.2f%% p99 %@ errors %d cpu %.0f%%",
                      s.t, s.participants, s.mediaFlowing, s.sentPacketsPerSecond, s.receivedPacketsPerSecond, s.lossPercent,
                      p99, sample.c.errorCount, s.cpuPercent)
    }
}

/// A participant to start on a loop.
struct StartRequest: Sendable {
    var room: String?
    var name: String
    var token: String
    var publishes: Bool
    var bindIP: String?
}

struct FinalTracks: Sendable {
    var sent: [UInt32: UInt16]
    var received: [ReceivedTrack]
}

/// Carries a worker across threads; it is only used on its loop.
struct LoadWorkerBox: @unchecked Sendable {
    let worker: LoadWorker
    init(_ w: LoadWorker) { worker = w }
}

/// This process's CPU time (user + system), from getrusage.
struct CPUUsage {
    var seconds: Double
    static func now() -> CPUUsage { CPUUsage(seconds: ProcessCPU.seconds()) }
    func seconds(since earlier: CPUUsage) -> Double { seconds - earlier.seconds }
}
