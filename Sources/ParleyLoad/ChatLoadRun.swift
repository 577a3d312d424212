import Foundation
import ParleyAuth
import ParleyCore
import ParleyIO
import ParleyProtocol

/// Runs `parley load chat`: connects the users (each syncs), creates the
/// groups, sends at the rate for the duration with the offline users away
/// for its middle third, lets deliveries drain, and reports.
public enum ChatLoad {
    public static func run(_ o: ChatLoadOptions, live: (String) -> Void) throws -> ChatLoadReport {
        let url = try ServerURL(o.base.url)
        guard let server = SocketAddress(ip: url.host == "localhost" ? "127.0.0.1" : url.host, port: url.port) else {
            throw LoadArgumentError.bad("\(url.host) is not an IP address")
        }
        let tls: TLSContext? = url.secure ? try TLSContext.client(pinnedSHA256: o.base.fingerprint) : nil
        let plan = ChatPlan(server: server, host: url.host, path: url.path, tls: tls, bind: o.base.bind)
        let group = try EventLoopGroup(numberOfThreads: o.base.loops, logger: Logger(label: "parley.load", level: .error))
        defer { group.syncShutdownGracefully() }
        let prefix = o.base.roomPrefix
        // The run's messages (rate × duration), shared out over the loops.
        let messages = Int((Double(o.rate) * o.base.duration.seconds).rounded())
        let sendNanoseconds = UInt64(max(0, o.base.duration.seconds) * 1e9)
        let loops = group.loops.count
        let workers = try group.loops.enumerated().map { k, loop in
            try loop.submit { () -> ChatWorkerBox in
                let share = messages * (k + 1) / loops - messages * k / loops
                let w = ChatWorker(loop: loop, plan: plan, share: share, sendNanoseconds: sendNanoseconds, allUsers: o.users,
                                   prefix: prefix, textBytes: o.textBytes)
                w.start()
                return ChatWorkerBox(worker: w)
            }
        }
        let now = Int64(Date().timeIntervalSince1970)
        let ttl = Int64(o.base.duration.seconds + o.base.ramp.seconds) + 3600
        let tokens: [String] = o.base.secret.map { secret in
            (0..<o.users).map { i in JWT.sign(TokenClaims(subject: "\(prefix)-u\(i)", issuedAt: now, expiresAt: now + ttl), secret: secret) }
        } ?? Array(o.base.tokens.prefix(o.users))
        let usage = CPUUsage.now()
        let start = MonotonicTime.now()
        var timeline: [ChatLoadReport.Second] = []
        var previous = ChatCounters()
        var previousAt = start

        func sample(_ phase: String) -> ChatCounters {
            var total = ChatCounters()
            var window = LatencyHistogram()
            for w in workers {
                if let (c, h) = try? w.worker.loop.submit({ let x = w.worker.sample(); return SampleBox(c: x.0, h: x.1) }).pair {
                    total.add(c)
                    window.add(h)
                }
            }
            let t = MonotonicTime.now()
            let dt = max(1e-3, t.since(previousAt).seconds)
            timeline.append(ChatLoadReport.Second(t: t.since(start).seconds, ready: total.ready,
                                                  ackedPerSecond: Double(total.acked - previous.acked) / dt,
                                                  deliveredPerSecond: Double(total.delivered - previous.delivered) / dt,
                                                  p99Milliseconds: window.percentile(0.99).map { Double($0) / 1e6 },
                                                  errors: total.errorCount, phase: phase))
            previous = total
            previousAt = t
            return total
        }
        func wait(until deadline: MonotonicTime, phase: String, _ done: (ChatCounters) -> Bool) {
            var nextSample = MonotonicTime.now().adding(.seconds(1))
            while MonotonicTime.now() < deadline {
                usleep(50_000)
                if MonotonicTime.now() >= nextSample {
                    let s = sample(phase)
                    live(String(format: "t=%3.0fs %@ users ready %d/%d acked %.0f msg/s delivered %.0f msg/s p99 %@ errors %d", timeline.last!.t,
                                phase, s.ready, o.users, timeline.last!.ackedPerSecond, timeline.last!.deliveredPerSecond,
                                timeline.last!.p99Milliseconds.map { String(format: "%.1f ms", $0) } ?? "-", s.errorCount))
                    nextSample = nextSample.adding(.seconds(1))
                    if done(s) { return }
                }
            }
        }

        // Connect, over the ramp; each user is ready after its sync.
        let rampNanos = max(0, o.base.ramp.seconds) * 1e9
        for i in 0..<o.users {
            if rampNanos > 0 {
                let due = start.adding(.nanoseconds(Int64(rampNanos * Double(i) / Double(o.users))))
                while MonotonicTime.now() < due { usleep(2000) }
            }
            let box = workers[i % workers.count]
            let token = tokens[i]
            _ = box.worker.loop.execute {
                let w = box.worker
                let u = ChatUser(worker: w, index: i, name: "\(prefix)-u\(i)", token: token)
                w.users.append(u)
                w.c.users += 1
                u.connect()
            }
        }
        wait(until: MonotonicTime.now().adding(.seconds(30)), phase: "connect") { $0.ready >= o.users }
        // Groups: the first member creates each; members learn its conversation from the `created` event.
        if let g = o.groups {
            for k in 0..<g.count {
                let members = (0..<g.members).map { (k * g.members + $0) % o.users }
                let creator = members[0]
                let box = workers[creator % workers.count]
                let names = members.dropFirst().map { "\(prefix)-u\($0)" }
                _ = box.worker.loop.execute { box.worker.users.first { $0.index == creator }?.createGroup(named: "\(prefix)-g\(k)", members: names) }
            }
            wait(until: MonotonicTime.now().adding(.seconds(30)), phase: "groups") { $0.groupsCreated + $0.errorCount >= g.count }
            usleep(500_000)
        }
        // Send for the duration; the offline users are away for its middle third.
        let sendStart = MonotonicTime.now()
        for w in workers { _ = w.worker.loop.execute { w.worker.startSending() } }
        let third = Duration.nanoseconds(Int64(o.base.duration.seconds * 1e9 / 3))
        let offline = Int(Double(o.users) * o.offline)
        func offlineUsers(_ body: @escaping @Sendable (ChatUser) -> Void) {
            guard offline > 0 else { return }
            for w in workers {
                _ = w.worker.loop.execute {
                    // Every k-th user, spread over the users (and the groups).
                    for u in w.worker.users where (u.index * offline) % o.users < offline { body(u) }
                }
            }
        }
        wait(until: sendStart.adding(third), phase: "send") { _ in false }
        offlineUsers { $0.goOffline() }
        wait(until: sendStart.adding(third * 2), phase: "offline") { _ in false }
        offlineUsers { u in u.worker.c.reconnects += 1; u.connect() }
        wait(until: sendStart.adding(o.base.duration), phase: "send") { _ in false }
        let sendSeconds = MonotonicTime.now().since(sendStart).seconds
        for w in workers { _ = w.worker.loop.execute { w.worker.finishSending() } }
        // Drain: until every acked message reached every recipient, or 15 s.
        wait(until: MonotonicTime.now().adding(.seconds(15)), phase: "drain") { s in
            s.delivered >= s.expectedDeliveries && s.ready >= s.users - (s.errors["connect"] ?? 0) - (s.errors["auth: closed"] ?? 0)
        }
        let final = sample("end")
        let cpu = CPUUsage.now().seconds(since: usage)
        for w in workers { _ = w.worker.loop.execute { w.worker.stop() } }
        usleep(200_000)
        return ChatLoadReport(options: o, c: final, timeline: timeline, sendSeconds: sendSeconds, generatorCPUSeconds: cpu,
                              wallSeconds: MonotonicTime.now().since(start).seconds)
    }
}

struct SampleBox: Sendable {
    var c: ChatCounters
    var h: LatencyHistogram
    var pair: (ChatCounters, LatencyHistogram) { (c, h) }
}

/// What a chat run measured.
public struct ChatLoadReport: Sendable {
    public struct Second: Sendable {
        public var t: Double
        public var ready: Int
        public var ackedPerSecond: Double
        public var deliveredPerSecond: Double
        public var p99Milliseconds: Double?
        public var errors: Int
        public var phase: String
    }

    public let options: ChatLoadOptions
    let c: ChatCounters
    public let timeline: [Second]
    public let sendSeconds: Double
    public let generatorCPUSeconds: Double
    public let wallSeconds: Double
    public private(set) var failures: [String] = []

    init(options: ChatLoadOptions, c: ChatCounters, timeline: [Second], sendSeconds: Double, generatorCPUSeconds: Double, wallSeconds: Double) {
        self.options = options
        self.c = c
        self.timeline = timeline
        self.sendSeconds = sendSeconds
        self.generatorCPUSeconds = generatorCPUSeconds
        self.wallSeconds = wallSeconds
        var f: [String] = []
        if c.ready == 0 { f.append("no user connected") }
        if let m = options.base.maxLoss, undeliveredFraction > m {
            f.append(String(format: "undelivered %.3f%% is over --max-loss %.3f%%", undeliveredFraction * 100, m * 100))
        }
        if let m = options.base.maxP99 {
            let limit = m.seconds * 1000
            if let p = c.delivery.percentile(0.99).map({ Double($0) / 1e6 }) {
                if p > limit { f.append(String(format: "delivery p99 %.2f ms is over --max-p99 %.2f ms", p, limit)) }
            } else {
                f.append("nothing delivered for --max-p99")
            }
        }
        failures = f
    }

    public var passed: Bool { failures.isEmpty }
    public var undelivered: Int { max(0, c.expectedDeliveries - c.delivered) }
    public var undeliveredFraction: Double { c.expectedDeliveries > 0 ? Double(undelivered) / Double(c.expectedDeliveries) : 0 }

    private static func ms(_ ns: UInt64?) -> JSONValue { ns.map { .number((Double($0) / 1e3).rounded() / 1e3) } ?? .null }
    private static func percentiles(_ h: LatencyHistogram) -> JSONValue {
        ["count": JSONValue(h.count), "p50": ms(h.percentile(0.5)), "p90": ms(h.percentile(0.9)), "p99": ms(h.percentile(0.99)),
         "p999": ms(h.percentile(0.999)), "max": h.count > 0 ? ms(h.max) : .null]
    }

    public var json: JSONValue {
        var errors: [String: JSONValue] = [:]
        for (k, v) in c.errors { errors[k] = JSONValue(v) }
        return [
            "mode": "chat",
            "options": options.json,
            "users": ["started": JSONValue(c.users), "ready": JSONValue(c.ready), "reconnects": JSONValue(c.reconnects),
                      "syncs": JSONValue(c.syncs), "groupsCreated": JSONValue(c.groupsCreated)],
            "messages": ["sent": JSONValue(c.sent), "acked": JSONValue(c.acked), "duplicateAcks": JSONValue(c.duplicateAcks),
                         "expectedDeliveries": JSONValue(c.expectedDeliveries), "delivered": JSONValue(c.delivered),
                         "undelivered": JSONValue(undelivered), "duplicates": JSONValue(c.duplicates), "acksSent": JSONValue(c.acks),
                         "ackedPerSecond": .number((Double(c.acked) / max(sendSeconds, 1e-3)).rounded())],
            "undeliveredPercent": .number(undeliveredFraction * 100),
            "sentAckMs": Self.percentiles(c.sentAck),
            "sendLagMs": Self.percentiles(c.sendLag),
            "deliveryMs": Self.percentiles(c.delivery),
            "errors": ["total": JSONValue(c.errorCount), "byKind": .object(errors)],
            "generator": ["cpuSeconds": .number(generatorCPUSeconds), "wallSeconds": .number(wallSeconds),
                          "cpuPercent": .number(generatorCPUSeconds * 100 / max(wallSeconds, 1e-3))],
            "timeline": .array(timeline.map { s in
                ["t": .number((s.t * 10).rounded() / 10), "phase": .string(s.phase), "ready": JSONValue(s.ready),
                 "ackedPerSecond": .number(s.ackedPerSecond.rounded()), "deliveredPerSecond": .number(s.deliveredPerSecond.rounded()),
                 "p99Ms": s.p99Milliseconds.map { .number($0) } ?? .null, "errors": JSONValue(s.errors)]
            }),
            "passed": .bool(passed),
            "failures": .array(failures.map { .string($0) }),
        ]
    }

    public var table: String {
        func f(_ ns: UInt64?) -> String { ns.map { String(format: "%.2f", Double($0) / 1e6) } ?? "-" }
        func row(_ h: LatencyHistogram) -> String {
            [h.percentile(0.5), h.percentile(0.9), h.percentile(0.99), h.percentile(0.999), h.count > 0 ? h.max : nil].map { f($0).padded(9) }.joined()
        }
        var s = "users         \(c.users) started, \(c.ready) ready, \(c.reconnects) reconnected, \(c.groupsCreated) groups\n"
        s += "messages      \(c.sent) sent, \(c.acked) acked (\(String(format: "%.0f", Double(c.acked) / max(sendSeconds, 1e-3))) msg/s), "
        s += "\(c.expectedDeliveries) deliveries expected, \(c.delivered) delivered, \(undelivered) undelivered "
        s += String(format: "(%.3f%%), %d repeats dropped\n", undeliveredFraction * 100, c.duplicates)
        s += "              " + ["p50", "p90", "p99", "p99.9", "max"].map { $0.padded(9) }.joined() + " (ms)\n"
        s += "send → sent   " + row(c.sentAck) + "\n"
        s += "send → deliv. " + row(c.delivery) + "\n"
        s += "send lag      " + row(c.sendLag) + " (late against the schedule)\n"
        s += "errors        \(c.errorCount)" + (c.errors.isEmpty ? "" : " (" + c.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") + ")") + "\n"
        s += String(format: "generator     %.2f CPU-s in %.1f s\n", generatorCPUSeconds, wallSeconds)
        s += passed ? "result        pass\n" : "result        FAIL: " + failures.joined(separator: "; ") + "\n"
        return s
    }

    public var html: String {
        let t = timeline.map(\.t)
        var page = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>parley load chat report</title>"
        page += "<style>body{font-family:sans-serif;margin:24px}pre{background:#f4f4f4;padding:12px;font-size:13px}</style></head><body>\n"
        page += "<h1>parley load chat: \(passed ? "pass" : "FAIL")</h1>\n<pre>\(LoadReport.escape(table))</pre>\n"
        page += LoadReport.chart(id: "delivery", title: "Send → delivered p99 (ms)", t: t, series: [("p99", "#1f77b4", timeline.map(\.p99Milliseconds))])
        page += LoadReport.chart(id: "throughput", title: "Messages per second", t: t,
                                 series: [("acked", "#2ca02c", timeline.map { $0.ackedPerSecond }), ("delivered", "#ff7f0e", timeline.map { $0.deliveredPerSecond })])
        page += LoadReport.chart(id: "users", title: "Users ready", t: t, series: [("ready", "#9467bd", timeline.map { Double($0.ready) })])
        return page + "</body></html>\n"
    }
}
