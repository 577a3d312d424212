import Foundation
import ParleyAuth
import ParleyCore
import ParleyIO
import ParleyProtocol

/// What `parley load chat` runs: users on the signalling WebSocket sending
/// 1:1 and group messages at a total rate, some of them going offline for
/// the middle third of the run.
public struct ChatLoadOptions: Sendable {
    /// Connection, tokens, binding, loops, duration, ramp and thresholds
    /// (the fields both modes share; `maxLoss` is undelivered messages,
    /// `maxP99` the send → delivered latency).
    public var base = MediaLoadOptions()
    public var users = 100
    /// Messages per second over all users.
    public var rate = 100
    /// `groups × members` groups (nil: none); half the messages go to groups.
    public var groups: (count: Int, members: Int)?
    /// Fraction of users offline from 1/3 to 2/3 of the run.
    public var offline = 0.0
    /// Bytes of each message's text.
    public var textBytes = 64

    public init() { base.roomPrefix = "chat" }

    public static let valueFlags: Set<String> = [
        "url", "secret-file", "token-file", "fingerprint", "bind", "loops", "duration", "ramp", "max-loss", "max-p99",
        "room-prefix", "users", "rate", "groups", "offline", "text-bytes",
    ]
    public static let switchFlags: Set<String> = ["insecure"]

    public mutating func apply(_ name: String, _ value: String) throws(LoadArgumentError) {
        switch name {
        case "users":
            guard let n = Int(value), (2...MediaLoadOptions.maxParticipants).contains(n) else { throw .bad("--users takes 2 to \(MediaLoadOptions.maxParticipants)") }
            users = n
        case "rate":
            let v = value.hasSuffix("/s") ? String(value.dropLast(2)) : value
            guard let n = Int(v), (1...1_000_000).contains(n) else { throw .bad("--rate takes messages per second (20000/s), got \"\(value)\"") }
            rate = n
        case "groups":
            let p = value.lowercased().split(separator: "x")
            guard p.count == 2, let g = Int(p[0]), let m = Int(p[1]), g >= 0, (2...1000).contains(m) else {
                throw .bad("--groups takes COUNTxMEMBERS (100x50), got \"\(value)\"")
            }
            groups = g > 0 ? (g, m) : nil
        case "offline":
            guard let f = parseFraction(value), f < 1 else { throw .bad("--offline takes a percentage below 100% (10%), got \"\(value)\"") }
            offline = f
        case "text-bytes":
            guard let n = Int(value), (32...65536).contains(n) else { throw .bad("--text-bytes takes 32 to 65536") }
            textBytes = n
        default:
            guard Self.valueFlags.contains(name) || Self.switchFlags.contains(name) else { throw .bad("unknown option --\(name)") }
            try base.apply(name, value)
        }
    }

    public func validate() throws(LoadArgumentError) {
        if base.secret == nil && base.tokens.count < users { throw .bad("--secret-file (or --token-file with a token per user) is required") }
        if base.url.hasPrefix("wss://") && !base.insecure && base.fingerprint == nil {
            throw .bad("wss:// needs --insecure or --fingerprint SHA256 (the server's certificate is self-signed)")
        }
        if let g = groups, g.members > users { throw .bad("--groups: \(g.members) members but only \(users) users") }
    }

    var json: JSONValue {
        ["url": .string(base.url), "users": JSONValue(users), "rate": JSONValue(rate), "durationSeconds": .number(base.duration.seconds),
         "groups": groups.map { .string("\($0.count)x\($0.members)") } ?? .null, "offlinePercent": .number(offline * 100),
         "textBytes": JSONValue(textBytes), "loops": JSONValue(base.loops)]
    }
}

/// Counts of a chat run (one loop's, or summed).
struct ChatCounters: Sendable {
    var users = 0, ready = 0, groupsCreated = 0, reconnects = 0, syncs = 0
    var sent = 0, acked = 0, duplicateAcks = 0, expectedDeliveries = 0, delivered = 0, duplicates = 0, acks = 0
    var errors: [String: Int] = [:]
    var sentAck = LatencyHistogram()
    var delivery = LatencyHistogram()
    /// How late each send was against its place in the schedule (the generator's own delay).
    var sendLag = LatencyHistogram()

    mutating func add(_ o: ChatCounters) {
        users += o.users; ready += o.ready; groupsCreated += o.groupsCreated; reconnects += o.reconnects; syncs += o.syncs
        sent += o.sent; acked += o.acked; duplicateAcks += o.duplicateAcks; expectedDeliveries += o.expectedDeliveries
        delivered += o.delivered; duplicates += o.duplicates; acks += o.acks
        for (k, v) in o.errors { errors[k, default: 0] += v }
        sentAck.add(o.sentAck); delivery.add(o.delivery); sendLag.add(o.sendLag)
    }
    var errorCount: Int { errors.values.reduce(0, +) }
}

/// One synthetic chat user with one device, on its worker's loop: auth,
/// the sync after it, sends with a send time in the text, acks what it got
/// (every 500 ms, at once for a sync page's last message; one `chat.ack`
/// for all its conversations), and drops
/// repeats by (conversation, seq).
final class ChatUser: SignallingClientHandler {
    unowned let worker: ChatWorker
    let index: Int
    let name: String
    let token: String
    private(set) var client: SignallingClient?
    private(set) var ready = false
    private var lastSeq: [Int: Int] = [:]
    private var pendingAck: [Int: Int] = [:]
    /// Messages sent and not yet acknowledged, by client id.
    private var outbox: [String: (fields: [String: JSONValue], expected: Int, started: UInt64)] = [:]
    private var wentOffline = false
    /// Groups this user is in: conversation → members.
    private(set) var groups: [(conversation: Int, members: Int)] = []
    private var nextClientID = 0
    var wantsOffline = false
    /// In the worker's list of ready users (it stays there while offline until drawn).
    var listed = false

    init(worker: ChatWorker, index: Int, name: String, token: String) {
        self.worker = worker
        self.index = index
        self.name = name
        self.token = token
    }

    func connect() {
        let plan = worker.plan
        let local = plan.bind.isEmpty ? nil : SocketAddress(ip: plan.bind[index % plan.bind.count], port: 0)
        do {
            let c = try SignallingClient.connect(to: plan.server, host: plan.host, path: plan.path, tls: plan.tls, on: worker.loop,
                                                 localAddress: local, handler: self)
            client = c
            c.keepaliveInterval = .seconds(20)
            c.request(.auth(token: token, room: nil, device: "load")) { [weak self] r in
                if case .failure(let e) = r { self?.worker.error("auth", e) }
            }
        } catch {
            worker.c.errors["connect", default: 0] += 1
        }
    }

    func goOffline() {
        wentOffline = true
        if ready { worker.c.ready -= 1 }
        ready = false
        flushAcks()
        client?.close()
        client = nil
    }

    func signallingClient(_ client: SignallingClient, received event: JSONValue) {
        switch event["type"]?.stringValue {
        case "sync.done":
            worker.c.syncs += 1
            if !ready { ready = true; worker.c.ready += 1; worker.userReady(self) }
            if wentOffline { wentOffline = false; for id in outbox.keys.sorted() { transmit(id) } }
        case "chat.message":
            received(event)
        default: break
        }
    }

    private func received(_ m: JSONValue) {
        guard let conversation = m["conversation"]?.intValue, let seq = m["seq"]?.intValue else { return }
        if seq <= lastSeq[conversation, default: 0] {
            worker.c.duplicates += 1
        } else {
            lastSeq[conversation] = seq
            if let e = m["event"] {
                if e["action"]?.stringValue == "created" {
                    groups.append((conversation, e["members"]?.arrayValue?.count ?? 0))
                }
            } else if m["from"]?.stringValue != name, let text = m["text"]?.stringValue, text.hasPrefix("t=") {
                worker.c.delivered += 1
                let digits = text.dropFirst(2).prefix { $0.isNumber }
                if let t = Int64(digits) {
                    let d = realtimeNanoseconds() - t
                    worker.c.delivery.record(d > 0 ? UInt64(d) : 0)
                    worker.deliveryWindow.record(d > 0 ? UInt64(d) : 0)
                }
            }
        }
        pendingAck[conversation] = max(pendingAck[conversation] ?? 0, seq)
        if m["ack"] == .bool(true) { flushAcks() }
    }

    func flushAcks() {
        guard let client, !pendingAck.isEmpty else { return }
        // One chat.ack for every conversation with news (at most ChatRequest.maxAcks each).
        var acks = pendingAck.map { ChatAck(conversation: Int64($0.key), seq: Int64($0.value)) }
        pendingAck.removeAll(keepingCapacity: true)
        worker.c.acks += acks.count
        while !acks.isEmpty {
            let chunk = Array(acks.prefix(ChatRequest.maxAcks))
            acks.removeFirst(chunk.count)
            client.request(.chatAck(chunk)) { [weak self] r in
                // An ack cut off by our own close is not an error: the sync repeats those messages.
                if case .failure(let e) = r, case .closed = e { return }
                if case .failure(let e) = r { self?.worker.error("chat.ack", e) }
            }
        }
    }

    func createGroup(named group: String, members: [String]) {
        client?.request(ClientRequest(type: "chat.group.create", fields: ["name": .string(group), "members": .array(members.map { .string($0) })])) { [weak self] r in
            switch r {
            case .success: self?.worker.c.groupsCreated += 1
            case .failure(let e): self?.worker.error("chat.group.create", e)
            }
        }
    }

    /// Sends one message to `to` (a user) or to one of this user's groups.
    func send(to: String?, group: (conversation: Int, members: Int)?) {
        guard client != nil, ready else { return }
        nextClientID += 1
        var text = "t=\(realtimeNanoseconds()) "
        text += worker.padding(to: worker.textBytes - text.utf8.count)
        let clientID = "\(name)-\(nextClientID)"
        var fields: [String: JSONValue] = ["clientId": .string(clientID), "text": .string(text)]
        if let group { fields["group"] = JSONValue(group.conversation) } else { fields["to"] = .string(to ?? "") }
        // Expected from the send on (a reply may come after the run, the
        // delivery before it); taken back when the server refuses the
        // message or the connection is lost first (not stored, or not known
        // to be). A timed-out send stays expected: it may have been stored.
        let expected = group.map { max(0, $0.members - 1) } ?? 1
        worker.c.sent += 1
        worker.c.expectedDeliveries += expected
        outbox[clientID] = (fields, expected, MonotonicTime.now().nanoseconds)
        transmit(clientID)
    }

    /// Sends (or, after going offline with it unacknowledged, sends again
    /// with the same client id, as a real client does) one outbox message.
    /// The server answers a resend of a stored message with the same ack.
    private func transmit(_ clientID: String) {
        guard let client, let m = outbox[clientID] else { return }
        client.request(ClientRequest(type: "chat.send", fields: m.fields), timeout: .seconds(30)) { [weak self] r in
            guard let self else { return }
            switch r {
            case .success(let reply):
                guard self.outbox.removeValue(forKey: clientID) != nil else { return }
                if reply["duplicate"] == .bool(true) { self.worker.c.duplicateAcks += 1 }
                self.worker.c.acked += 1
                self.worker.c.sentAck.record(MonotonicTime.now().nanoseconds &- m.started)
            case .failure(.closed) where self.wentOffline:
                break  // cut off by our own close: stays in the outbox, sent again after the sync
            case .failure(let e):
                self.outbox.removeValue(forKey: clientID)
                if case .timedOut = e {} else { self.worker.c.expectedDeliveries -= m.expected }
                self.worker.error("chat.send", e)
            }
        }
    }

    func signallingClient(_ client: SignallingClient, didCloseWith code: UInt16?, reason: String?) {
        if self.client === client {
            self.client = nil
            if ready { ready = false; worker.c.ready -= 1; worker.c.errors[code.map { "closed: \($0)" } ?? "closed: connection lost", default: 0] += 1 }
        }
    }
}

/// One loop's chat users and the timer that paces their sends and flushes
/// their acks. Its share of the run's messages goes out on a fixed
/// schedule from `startSending` (message k at k / rate), each to a random
/// ready user, half to groups when there are any: a tick sends every
/// message due by then, however late it runs, and records how late each
/// was (`sendLag`), so a busy generator shows as lag instead of as a lower
/// rate; `finishSending` sends what is still due, so a run sends its share
/// exactly.
final class ChatWorker {
    let loop: EventLoop
    let plan: ChatPlan
    let textBytes: Int
    var c = ChatCounters()
    var deliveryWindow = LatencyHistogram()
    var users: [ChatUser] = []
    private var readyUsers: [ChatUser] = []
    private var timer: TimerHandle?
    private var lastAckFlush: UInt64 = 0
    /// Messages this worker sends in the run, over `sendNanoseconds`.
    let share: Int
    let sendNanoseconds: UInt64
    private var sendStart: UInt64?
    private var scheduled = 0
    let allUsers: Int
    let prefix: String
    private var pad = ""
    /// Picks senders and recipients: no system call per draw, as the system generator's is.
    private var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))

    init(loop: EventLoop, plan: ChatPlan, share: Int, sendNanoseconds: UInt64, allUsers: Int, prefix: String, textBytes: Int) {
        self.loop = loop
        self.plan = plan
        self.share = share
        self.sendNanoseconds = max(1, sendNanoseconds)
        self.allUsers = allUsers
        self.prefix = prefix
        self.textBytes = textBytes
    }

    /// `n` bytes of text padding (one string kept, not one built per message).
    func padding(to n: Int) -> Substring {
        if pad.utf8.count < n { pad = String(repeating: "x", count: n) }
        return pad.prefix(max(0, n))
    }

    func error(_ what: String, _ e: SignallingClientError) {
        let kind: String
        switch e {
        case .refused(_, let s): kind = "\(what): \(s.code.rawValue)"
        case .timedOut: kind = "\(what): timeout"
        case .closed: kind = "\(what): closed"
        case .failed: kind = "\(what): failed"
        }
        c.errors[kind, default: 0] += 1
    }

    func userReady(_ u: ChatUser) {
        if !u.listed { u.listed = true; readyUsers.append(u) }
    }

    func start() {
        // About 10 messages a tick, every 1 to 5 ms: 5 ms at 2,000 a second, 1 ms (20 a tick) at 20,000, where
        // 5 ms ticks would put bursts of 100 in front of the server (the last waiting behind 99) and of the
        // deliveries this loop reads. Shorter ticks at low rates cost the generator, and the server, a
        // wake-up per message or two (at 2,000 a second, 1 ms ticks cost both about a third more CPU).
        let perSecond = Double(share) / (Double(sendNanoseconds) / 1e9)
        let interval = min(5_000_000, max(1_000_000, perSecond > 0 ? 10e9 / perSecond : 5_000_000))
        timer = loop.scheduleRepeatingTimer(every: .nanoseconds(Int64(interval))) { [unowned self] in self.tick() }
    }

    func startSending() {
        sendStart = MonotonicTime.now().nanoseconds
    }

    /// Sends every message of the share still due, then no more.
    func finishSending() {
        sendDue(share, now: MonotonicTime.now().nanoseconds)
        sendStart = nil
    }

    /// Sends messages until `due` of the share have been scheduled.
    private func sendDue(_ due: Int, now: UInt64) {
        guard let start = sendStart else { return }
        while scheduled < due {
            let at = start + UInt64(Double(scheduled) * Double(sendNanoseconds) / Double(share))
            scheduled += 1
            c.sendLag.record(now > at ? now - at : 0)
            // A user who went offline leaves the list when drawn (not by a scan of all users per tick).
            var pick: ChatUser?
            while pick == nil && !readyUsers.isEmpty {
                let i = Int.random(in: 0..<readyUsers.count, using: &random)
                if readyUsers[i].ready { pick = readyUsers[i] } else { readyUsers.swapAt(i, readyUsers.count - 1); readyUsers.removeLast().listed = false }
            }
            guard let u = pick else {
                c.errors["send: no user ready", default: 0] += 1
                continue
            }
            if !u.groups.isEmpty && Bool.random(using: &random) {
                u.send(to: nil, group: u.groups[Int.random(in: 0..<u.groups.count, using: &random)])
            } else {
                var other = Int.random(in: 0..<(allUsers - 1), using: &random)
                if other >= u.index { other += 1 }
                u.send(to: "\(prefix)-u\(other)", group: nil)
            }
        }
    }

    private func tick() {
        let now = MonotonicTime.now().nanoseconds
        if let start = sendStart, share > 0 {
            let elapsed = min(now > start ? now - start : 0, sendNanoseconds)
            sendDue(Int(Double(elapsed) / Double(sendNanoseconds) * Double(share)), now: now)
        }
        if now - lastAckFlush >= 500_000_000 {
            lastAckFlush = now
            for u in users { u.flushAcks() }
        }
    }

    func stop() {
        if let timer { loop.cancelTimer(timer) }
        timer = nil
        for u in users { u.flushAcks(); u.client?.close() }
    }

    func sample() -> (ChatCounters, LatencyHistogram) {
        let w = deliveryWindow
        deliveryWindow.reset()
        return (c, w)
    }
}

/// Where the server is, shared read-only by the chat workers.
final class ChatPlan: @unchecked Sendable {
    let server: SocketAddress
    let host: String
    let path: String
    let tls: TLSContext?
    let bind: [String]
    init(server: SocketAddress, host: String, path: String, tls: TLSContext?, bind: [String]) {
        self.server = server
        self.host = host
        self.path = path
        self.tls = tls
        self.bind = bind
    }
}

struct ChatWorkerBox: @unchecked Sendable { let worker: ChatWorker }
