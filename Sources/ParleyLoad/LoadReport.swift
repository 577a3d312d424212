import Foundation
import ParleyCore

/// What a `parley load media` run measured: totals at every receiver,
/// percentiles, the generator's own CPU and schedule, one line per second,
/// and the verdict of the thresholds. Renders as a table, JSON and HTML.
public struct LoadReport: Sendable {
    /// One second of the run.
    public struct Second: Sendable {
        public var t: Double
        public var participants: Int
        public var connected: Int
        public var mediaFlowing: Int
        public var sentPacketsPerSecond: Double
        public var receivedPacketsPerSecond: Double
        public var sentBitsPerSecond: Double
        public var receivedBitsPerSecond: Double
        public var lossPercent: Double
        public var p99Milliseconds: Double?
        public var errors: Int
        public var cpuPercent: Double
        public var phase: String
    }

    public let options: MediaLoadOptions
    let c: LoadCounters
    public let timeline: [Second]
    /// Seconds from the first participant's start to the end of media.
    public let wallSeconds: Double
    public let generatorCPUSeconds: Double
    /// Packets the receivers should have got (RFC 3550 A.3, with the tail
    /// up to the publisher's last packet), and got (unique).
    public let expected: Int64
    public let received: Int64
    /// Subscriptions that never got a packet.
    public let silentSubscriptions: Int
    public let meanJitterMilliseconds: Double
    public let maxJitterMilliseconds: Double
    /// Why the run failed its thresholds (empty: it passed).
    public private(set) var failures: [String] = []

    init(options: MediaLoadOptions, sample: LoadSample, sent: [UInt32: UInt16], received tracks: [ReceivedTrack],
         timeline: [Second], wallSeconds: Double, generatorCPUSeconds: Double) {
        self.options = options
        c = sample.c
        self.timeline = timeline
        self.wallSeconds = wallSeconds
        self.generatorCPUSeconds = generatorCPUSeconds
        var expected: Int64 = 0, received: Int64 = 0, silent = 0
        var jitterSum = 0.0, jitterMax = 0.0, jitterCount = 0
        for t in tracks {
            guard t.firstExtended >= 0 else { silent += 1; continue }
            var e = t.highestExtended - t.firstExtended + 1
            if let last = sent[t.ssrc] {
                // Packets the publisher sent after the last one this receiver got.
                let tail = Int64(last &- UInt16(truncatingIfNeeded: t.highestExtended))
                if tail < 0x8000 { e += tail }
            }
            expected += e
            received += min(t.received, e)
            jitterSum += t.jitterSeconds
            jitterMax = max(jitterMax, t.jitterSeconds)
            jitterCount += 1
        }
        self.expected = expected
        self.received = received
        silentSubscriptions = silent
        meanJitterMilliseconds = jitterCount > 0 ? jitterSum / Double(jitterCount) * 1000 : 0
        maxJitterMilliseconds = jitterMax * 1000
        failures = checkThresholds()
    }

    public var lost: Int64 { max(0, expected - received) }
    /// Lost / expected (0 when nothing was expected).
    public var lossFraction: Double { expected > 0 ? Double(lost) / Double(expected) : 0 }
    public var participants: Int { c.started }
    public var joined: Int { c.joined }
    public var passed: Bool { failures.isEmpty }
    /// One-way latency percentile in milliseconds (nil without samples).
    public func latencyMilliseconds(_ p: Double) -> Double? { c.latency.percentile(p).map { Double($0) / 1e6 } }
    public var joinP99Milliseconds: Double? { c.join.percentile(0.99).map { Double($0) / 1e6 } }
    /// The generator kept its schedule: no send skipped, and 99 % of sends
    /// within 10 ms of their time.
    public var keptSchedule: Bool { c.scheduleSkips == 0 && (c.lateness.percentile(0.99) ?? 0) <= 10_000_000 }

    private func checkThresholds() -> [String] {
        var f: [String] = []
        if c.joined == 0 { f.append("no participant joined") }
        if let m = options.maxLoss, lossFraction > m {
            f.append(String(format: "loss %.3f%% is over --max-loss %.3f%%", lossFraction * 100, m * 100))
        }
        if let m = options.maxP99 {
            let limit = m.seconds * 1000
            if let p = latencyMilliseconds(0.99) {
                if p > limit { f.append(String(format: "latency p99 %.2f ms is over --max-p99 %.2f ms", p, limit)) }
            } else if expected > 0 || c.subscriptions > 0 {
                f.append("no latency measured (no media received) for --max-p99")
            }
        }
        if let m = options.maxJoin {
            let limit = m.seconds * 1000
            if let p = joinP99Milliseconds, p > limit {
                f.append(String(format: "join time p99 %.0f ms is over --max-join %.0f ms", p, limit))
            }
            if c.firstMedia < c.subscribers {
                f.append("\(c.subscribers - c.firstMedia) of \(c.subscribers) receiving participants never got media (--max-join)")
            }
        }
        return f
    }

    // MARK: Rendering

    private static func ms(_ ns: UInt64?) -> JSONValue { ns.map { .number((Double($0) / 1e3).rounded() / 1e3) } ?? .null }

    private static func percentiles(_ h: LatencyHistogram) -> JSONValue {
        ["count": JSONValue(h.count), "p50": ms(h.percentile(0.5)), "p90": ms(h.percentile(0.9)), "p99": ms(h.percentile(0.99)),
         "p999": ms(h.percentile(0.999)), "max": h.count > 0 ? ms(h.max) : .null]
    }

    public var json: JSONValue {
        let seconds = max(wallSeconds, 1e-3)
        var errors: [String: JSONValue] = [:]
        for (k, v) in c.errors { errors[k] = JSONValue(v) }
        return [
            "options": options.json,
            "participants": ["started": JSONValue(c.started), "joined": JSONValue(c.joined), "latched": JSONValue(c.latched),
                             "receivedMedia": JSONValue(c.firstMedia), "receiving": JSONValue(c.subscribers),
                             "subscriptions": JSONValue(c.subscriptions), "silentSubscriptions": JSONValue(silentSubscriptions)],
            "packets": ["sent": JSONValue(c.rtpSent), "expected": .number(Double(expected)), "received": .number(Double(received)),
                        "lost": .number(Double(lost)), "duplicates": JSONValue(c.duplicates), "reordered": JSONValue(c.reordered),
                        "retransmitted": JSONValue(c.retransmitted), "rtcpSent": JSONValue(c.rtcpSent),
                        "rtcpReceived": JSONValue(c.rtcpReceived), "keyframes": JSONValue(c.keyframes)],
            "lossPercent": .number(lossFraction * 100),
            "latencyMs": Self.percentiles(c.latency),
            "jitterMs": ["mean": .number(meanJitterMilliseconds), "max": .number(maxJitterMilliseconds)],
            "joinMs": Self.percentiles(c.join),
            "joinReplyMs": Self.percentiles(c.joinReply),
            "stunRttMs": Self.percentiles(c.stunRTT),
            "bitrate": ["sentBps": .number((Double(c.bytesSent) * 8 / seconds).rounded()),
                        "receivedBps": .number((Double(c.bytesReceived) * 8 / seconds).rounded())],
            "feedback": ["nacksReceived": JSONValue(c.nacks), "plisReceived": JSONValue(c.plis), "consentAnswers": JSONValue(c.consentAnswers)],
            "errors": ["signalling": JSONValue(c.errorCount), "byKind": .object(errors), "srtp": JSONValue(c.srtpFailures),
                       "malformed": JSONValue(c.malformed), "udp": JSONValue(c.udpErrors)],
            "generator": ["cpuSeconds": .number(generatorCPUSeconds), "cpuPercent": .number(generatorCPUSeconds * 100 / seconds),
                          "wallSeconds": .number(wallSeconds), "loops": JSONValue(options.loops),
                          "sentPacketsPerCPUSecond": .number(generatorCPUSeconds > 0 ? (Double(c.rtpSent) / generatorCPUSeconds).rounded() : 0),
                          "schedulingLatenessMs": Self.percentiles(c.lateness), "skippedSends": JSONValue(c.scheduleSkips),
                          "keptSchedule": .bool(keptSchedule), "sendCalls": JSONValue(c.flushes)],
            "timeline": .array(timeline.map { s in
                ["t": .number((s.t * 10).rounded() / 10), "phase": .string(s.phase), "participants": JSONValue(s.participants),
                 "connected": JSONValue(s.connected), "receivingMedia": JSONValue(s.mediaFlowing),
                 "sentPps": .number(s.sentPacketsPerSecond.rounded()), "receivedPps": .number(s.receivedPacketsPerSecond.rounded()),
                 "sentBps": .number(s.sentBitsPerSecond.rounded()), "receivedBps": .number(s.receivedBitsPerSecond.rounded()),
                 "lossPercent": .number(s.lossPercent), "p99Ms": s.p99Milliseconds.map { .number($0) } ?? .null,
                 "errors": JSONValue(s.errors), "cpuPercent": .number(s.cpuPercent.rounded())]
            }),
            "passed": .bool(passed),
            "failures": .array(failures.map { .string($0) }),
        ]
    }

    /// The table printed at the end of a run.
    public var table: String {
        func f(_ ns: UInt64?) -> String { ns.map { String(format: "%.2f", Double($0) / 1e6) } ?? "-" }
        func row(_ h: LatencyHistogram) -> String {
            "\(f(h.percentile(0.5)).padded(9))\(f(h.percentile(0.9)).padded(9))\(f(h.percentile(0.99)).padded(9))"
                + "\(f(h.percentile(0.999)).padded(9))\((h.count > 0 ? f(h.max) : "-").padded(9))"
        }
        let seconds = max(wallSeconds, 1e-3)
        var s = ""
        s += "participants  \(c.started) started, \(c.joined) joined, \(c.latched) latched, \(c.firstMedia) received media\n"
        s += "packets       \(c.rtpSent) sent, \(expected) expected, \(received) received, \(lost) lost "
        s += String(format: "(%.3f%%), %d duplicates, %d reordered\n", lossFraction * 100, c.duplicates, c.reordered)
        s += String(format: "bitrate       %.2f Mbit/s out, %.2f Mbit/s in\n", Double(c.bytesSent) * 8 / seconds / 1e6,
                    Double(c.bytesReceived) * 8 / seconds / 1e6)
        s += String(format: "jitter        %.2f ms mean, %.2f ms max (RFC 3550)\n", meanJitterMilliseconds, maxJitterMilliseconds)
        s += "              " + ["p50", "p90", "p99", "p99.9", "max"].map { $0.padded(9) }.joined() + " (ms)\n"
        s += "latency       " + row(c.latency) + "\n"
        s += "join          " + row(c.join) + "  (connect → first media)\n"
        s += "stun rtt      " + row(c.stunRTT) + "\n"
        s += "errors        \(c.errorCount) signalling" + (c.errors.isEmpty ? "" : " (" + c.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") + ")")
        s += ", \(c.srtpFailures) srtp, \(silentSubscriptions) silent subscriptions\n"
        s += String(format: "generator     %.2f CPU-s in %.1f s (%.0f%% of a core), schedule %@ (p99 late %@ ms, %d skipped)\n",
                    generatorCPUSeconds, wallSeconds, generatorCPUSeconds * 100 / seconds, keptSchedule ? "kept" : "NOT kept",
                    f(c.lateness.percentile(0.99)), c.scheduleSkips)
        s += passed ? "result        pass\n" : "result        FAIL: " + failures.joined(separator: "; ") + "\n"
        return s
    }
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
