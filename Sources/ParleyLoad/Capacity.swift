import Foundation
import ParleyAuth
import ParleyCore
import ParleyIO
import ParleyProtocol
import Synchronization

/// `parley load media --find-capacity`: runs steps of growing size (rooms
/// doubled, then bisected) until a threshold breaks, and reports the
/// largest count that held with the server's CPU-seconds per
/// participant-second, read from its `/metrics`
/// (`parley_process_cpu_seconds_total`) before and after each step.
public enum CapacitySearch {
    public struct Step: Sendable {
        public var rooms: Int
        public var participants: Int
        public var passed: Bool
        public var failures: [String]
        public var lossPercent: Double
        public var p99Milliseconds: Double?
        public var serverCPUSeconds: Double?
        public var participantSeconds: Double
        public var generatorKeptSchedule: Bool

        /// Server CPU-seconds per participant-second (nil without /metrics).
        public var cpuPerParticipantSecond: Double? {
            guard let c = serverCPUSeconds, participantSeconds > 0 else { return nil }
            return c / participantSeconds
        }

        var json: JSONValue {
            ["rooms": JSONValue(rooms), "participants": JSONValue(participants), "passed": .bool(passed),
             "failures": .array(failures.map { .string($0) }), "lossPercent": .number(lossPercent),
             "p99Ms": p99Milliseconds.map { .number($0) } ?? .null,
             "serverCPUSeconds": serverCPUSeconds.map { .number($0) } ?? .null,
             "participantSeconds": .number(participantSeconds),
             "serverCPUSecondsPerParticipantSecond": cpuPerParticipantSecond.map { .number($0) } ?? .null,
             "generatorKeptSchedule": .bool(generatorKeptSchedule)]
        }
    }

    public struct Result: Sendable {
        public var steps: [Step]
        /// The largest step that held.
        public var best: Step? { steps.filter(\.passed).max { $0.participants < $1.participants } }

        public var json: JSONValue {
            var o: [String: JSONValue] = ["steps": .array(steps.map(\.json))]
            if let b = best {
                o["largestParticipants"] = JSONValue(b.participants)
                o["serverCPUSecondsPerParticipantSecond"] = b.cpuPerParticipantSecond.map { .number($0) } ?? .null
                o["participantsPerCore"] = b.cpuPerParticipantSecond.map { .number(($0 > 0 ? 1 / $0 : 0).rounded()) } ?? .null
            }
            return .object(o)
        }

        public var table: String {
            var s = "rooms  participants  result  loss%    p99 ms   server CPU-s/participant-s  generator\n"
            for st in steps {
                s += "\(String(st.rooms).padded(7))\(String(st.participants).padded(14))\((st.passed ? "pass" : "FAIL").padded(8))"
                s += String(format: "%-9.3f", st.lossPercent)
                s += (st.p99Milliseconds.map { String(format: "%.2f", $0) } ?? "-").padded(9)
                s += (st.cpuPerParticipantSecond.map { String(format: "%.6f", $0) } ?? "-").padded(28)
                s += st.generatorKeptSchedule ? "kept schedule\n" : "SATURATED (schedule not kept)\n"
            }
            if let b = best {
                s += "capacity: \(b.participants) participants held"
                if let c = b.cpuPerParticipantSecond, c > 0 {
                    s += String(format: "; %.6f server CPU-s per participant-second, about %.0f participants per core", c, 1 / c)
                }
                s += "\n"
            } else {
                s += "capacity: no step held\n"
            }
            return s
        }
    }

    /// Runs the search. `o.rooms` is the first step's size; `maxRooms` the
    /// most it grows to.
    public static func run(_ o: MediaLoadOptions, maxRooms: Int, live: (String) -> Void) throws -> Result {
        var o = o
        if o.maxLoss == nil && o.maxP99 == nil && o.maxJoin == nil {
            o.maxLoss = 0.01
            o.maxP99 = .milliseconds(50)
        }
        var steps: [Step] = []
        var good = 0, bad = Int.max
        var rooms = o.rooms
        var k = 0
        while rooms > good && rooms < bad && rooms <= maxRooms {
            var step = o
            step.rooms = rooms
            step.roomPrefix = "\(o.roomPrefix)-c\(k)"
            k += 1
            live("capacity step \(k): \(rooms) rooms, \(rooms * o.perRoom) participants")
            let before = try? ServerMetrics.read(o, name: "parley_process_cpu_seconds_total")
            let r = try MediaLoad.run(step, live: live)
            let after = try? ServerMetrics.read(o, name: "parley_process_cpu_seconds_total")
            let cpu: Double? = if let before, let after { after - before } else { nil }
            steps.append(Step(rooms: rooms, participants: r.participants, passed: r.passed, failures: r.failures,
                              lossPercent: r.lossFraction * 100, p99Milliseconds: r.latencyMilliseconds(0.99),
                              serverCPUSeconds: cpu, participantSeconds: Double(r.participants) * r.wallSeconds,
                              generatorKeptSchedule: r.keptSchedule))
            if r.passed { good = rooms } else { bad = rooms }
            // Double until something breaks, then halve the gap a few times.
            if bad == Int.max {
                rooms *= 2
            } else {
                let next = (good + bad) / 2
                if next == good || bad - good <= max(1, bad / 8) { break }
                rooms = next
            }
        }
        return Result(steps: steps)
    }
}

/// Reads one value from the server's `/metrics` over the same listener the
/// load uses (TLS for wss://); an admin token minted from the secret goes
/// along when there is one (needed from a non-loopback address).
enum ServerMetrics {
    static func read(_ o: MediaLoadOptions, name: String) throws -> Double {
        let url = try ServerURL(o.url)
        guard let address = SocketAddress(ip: url.host == "localhost" ? "127.0.0.1" : url.host, port: url.port) else {
            throw LoadArgumentError.bad("\(url.host) is not an IP address")
        }
        let tls: TLSContext? = url.secure ? try TLSContext.client(pinnedSHA256: o.fingerprint) : nil
        var request = "GET /metrics HTTP/1.1\r\nHost: \(url.host)\r\nConnection: close\r\n"
        if let secret = o.secret {
            let now = Int64(Date().timeIntervalSince1970)
            let token = JWT.sign(TokenClaims(subject: "parley-load", issuedAt: now, expiresAt: now + 300, isAdmin: true), secret: secret)
            request += "Authorization: Bearer \(token)\r\n"
        }
        request += "\r\n"
        let group = try EventLoopGroup(numberOfThreads: 1, logger: Logger(label: "parley.load", level: .error))
        defer { group.syncShutdownGracefully() }
        let fetch = MetricsFetch()
        let bytes = Array(request.utf8)
        try group.loops[0].submit {
            let c = try TCPConnection.connect(to: address, on: group.loops[0], tls: tls, handler: fetch)
            c.write(bytes)
        }
        let deadline = MonotonicTime.now().adding(.seconds(5))
        while !fetch.done.withLock({ $0 }) && MonotonicTime.now() < deadline { usleep(2000) }
        let text = String(decoding: fetch.body.withLock { $0 }, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200") else { throw LoadArgumentError.bad("GET /metrics: \(text.prefix(40))") }
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            if let v = Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespacesAndNewlines)) { return v }
        }
        throw LoadArgumentError.bad("the server's /metrics has no \(name)")
    }
}

/// Collects one HTTP response until the server closes the connection.
final class MetricsFetch: TCPConnectionHandler, Sendable {
    let body = Mutex<[UInt8]>([])
    let done = Mutex(false)

    func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        body.withLock { b in if b.count < 4 << 20 { b.append(contentsOf: bytes) } }
    }

    func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) { done.withLock { $0 = true } }
}
