import Foundation
import Synchronization
import ParleyAuth
import ParleyCore
import ParleyHTTP
import ParleyIO

/// Where and how `WebhookNotifier` posts (config keys `chat-webhook-*`, docs/operations.md).
public struct WebhookConfig: Sendable {
    /// `http://HOST[:PORT]/PATH` or `https://…` (`chat-webhook-url`).
    public var url: WebhookURL
    /// The HMAC-SHA256 key of the signature (`chat-webhook-secret` or `chat-webhook-secret-file`).
    public var secret: [UInt8]
    /// At most one notification per user per this many seconds; messages in between collapse into the next (`chat-webhook-interval-ms`).
    public var intervalSeconds = 10.0
    /// Users with a notification waiting, at most (`chat-webhook-queue`); more are dropped and counted.
    public var queueCapacity = 10_000
    /// Requests in flight at once (`chat-webhook-concurrency`).
    public var concurrency = 4
    /// Seconds one request may take, connect (when it needs one) to the end of the response (`chat-webhook-timeout-ms`).
    public var timeoutSeconds = 5.0
    /// Seconds a kept-alive connection to the receiver may wait idle for the next request before it is closed;
    /// 0: a connection per request (`Connection: close`) (`chat-webhook-idle-ms`).
    public var idleSeconds = 30.0
    /// Seconds a host name's resolved address is reused before getaddrinfo runs again; a failed connect forgets it
    /// at once (`chat-webhook-resolve-ttl-ms`).
    public var resolveTTLSeconds = 60.0
    /// Attempts per notification, the first included (`chat-webhook-attempts`).
    public var attempts = 5
    /// The wait before the first retry, doubled for each further one, at most 5 minutes (`chat-webhook-backoff-ms`).
    public var backoffSeconds = 1.0
    /// Whether the payload carries the message text, cut to 200 bytes (`chat-webhook-include-text`; off: privacy).
    public var includeText = false
    /// PEM certificates an https:// receiver must chain to (`chat-webhook-ca-file`).
    public var caFile = "/etc/ssl/certs/ca-certificates.crt"

    public init(url: WebhookURL, secret: [UInt8]) {
        self.url = url
        self.secret = secret
    }
}

/// A webhook's URL, split: `http://` or `https://`, a host (name or IP literal), a port, a path.
public struct WebhookURL: Sendable, Equatable, CustomStringConvertible {
    public var secure: Bool
    public var host: String
    public var port: UInt16
    /// The request target: path and query, `/` when the URL has none.
    public var target: String

    public struct ParseError: Error, CustomStringConvertible { public let description: String }

    public init(_ s: String) throws(ParseError) {
        if s.hasPrefix("https://") { secure = true } else if s.hasPrefix("http://") { secure = false } else {
            throw ParseError(description: "must start with http:// or https://, got \"\(s)\"")
        }
        var rest = Substring(s.dropFirst(secure ? 8 : 7))
        target = "/"
        if let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) {
            target = (rest[slash] == "?" ? "/" : "") + rest[slash...]
            rest = rest[..<slash]
        }
        guard !rest.contains("@") else { throw ParseError(description: "must not carry credentials (sign with chat-webhook-secret)") }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw ParseError(description: "the path must be printable ASCII without spaces") }
        let hp: HostPort
        let hasPort = rest.hasPrefix("[") ? rest.contains("]:") : rest.contains(":")
        do { hp = try HostPort.parse(hasPort ? String(rest) : "\(rest):\(secure ? 443 : 80)") } catch {
            throw ParseError(description: error.description)
        }
        guard hp.port > 0 else { throw ParseError(description: "port 0 cannot be reached") }
        host = hp.host
        port = UInt16(hp.port)
    }

    /// The `Host` header: the port only when not the scheme's default.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == (secure ? 443 : 80) ? h : "\(h):\(port)"
    }

    public var description: String { "\(secure ? "https" : "http")://\(hostHeader)\(target)" }
}

/// The notifier's metrics (`parley_chat_notifications_*`).
public struct NotifierMetrics: Sendable {
    /// Notifications the receiver answered 2xx.
    public let sent: Counter
    /// Given up: out of attempts, or a status that is not worth retrying (3xx, 4xx but 408 and 429).
    public let failed: Counter
    /// Attempts that failed and were queued again after a backoff.
    public let retried: Counter
    /// Messages folded into a notification already waiting for the same user.
    public let collapsed: Counter
    /// Notifications dropped because the queue was full.
    public let dropped: Counter
    /// Users with a notification waiting (new or to retry), and requests in flight.
    public let queued: Gauge
    public let inFlight: Gauge
    /// Connections opened to the receiver (a request on a kept-alive connection opens none).
    public let connections: Counter
    /// Host-name look-ups (getaddrinfo) for the receiver's address.
    public let resolves: Counter
    /// Kept-alive connections waiting for the next request.
    public let idleConnections: Gauge
    /// Attempts that got no status, by why (`WebhookConnection.Failure.Kind`).
    let errors: [WebhookConnection.Failure.Kind: Counter]

    public init(registry: MetricsRegistry) {
        let name = "parley_chat_notifications_total", help = "Offline notifications (chat webhook), by outcome"
        sent = registry.counter(name, help: help, labels: [("outcome", "sent")])
        failed = registry.counter(name, help: help, labels: [("outcome", "failed")])
        retried = registry.counter(name, help: help, labels: [("outcome", "retried")])
        collapsed = registry.counter(name, help: help, labels: [("outcome", "collapsed")])
        dropped = registry.counter(name, help: help, labels: [("outcome", "dropped")])
        queued = registry.gauge("parley_chat_notifications_queued", help: "Offline notifications waiting to be posted (new or to retry)")
        inFlight = registry.gauge("parley_chat_notifications_in_flight", help: "Offline notification requests in flight to the webhook")
        connections = registry.counter("parley_chat_notifications_connections_total",
                                       help: "Connections opened to the chat webhook (requests on a kept-alive one open none)")
        resolves = registry.counter("parley_chat_notifications_resolves_total", help: "Host-name look-ups (getaddrinfo) of the chat webhook")
        idleConnections = registry.gauge("parley_chat_notifications_idle_connections",
                                         help: "Kept-alive connections to the chat webhook waiting for the next request")
        errors = Dictionary(uniqueKeysWithValues: WebhookConnection.Failure.Kind.allCases.map { kind in
            (kind, registry.counter("parley_chat_notifications_errors_total", help: "Chat webhook attempts that got no status, by why",
                                    labels: [("reason", kind.rawValue)]))
        })
    }

    public static let shared = NotifierMetrics(registry: .shared)
}

/// The first `ChatNotifier`: POSTs a signed JSON document per notification
/// to a configured URL (docs/protocol.md "Offline notifications" gives the
/// payload and how to verify the signature).
///
/// It runs on a thread of its own (an event loop, "parley-notify"), so the
/// signalling loop only hands a notification over. The HTTP/1.1 client keeps
/// its connections alive (TLS for https:// with the peer's certificate and
/// name checked): each request reads its whole response (`HTTPResponseReader`)
/// and leaves the connection idle for the next, at most `concurrency` of
/// them and each for at most `idleSeconds`; a connection still sending a
/// request that was answered is aborted, not kept, so a connection queues
/// at most the one request in flight. A connection the receiver closed
/// is dropped; a request that found its kept-alive connection closed before
/// any byte of a response is sent again at once on a new one, without
/// counting an attempt. A host name is resolved on this thread (getaddrinfo,
/// never on the signalling loop) and the address reused for
/// `resolveTTLSeconds`, or until a connect to it fails. Collapse, the
/// per-user rate, priority, the queue's bound and backoff are
/// `NotificationQueue`'s.
public final class WebhookNotifier: ChatNotifier, @unchecked Sendable {
    public let config: WebhookConfig
    let metrics: NotifierMetrics
    let log: Logger
    private let group: EventLoopGroup
    private let loop: EventLoop
    private let tls: TLSContext?
    /// Handed over by `notify` and not yet taken into the queue (bounds the hop between threads).
    private let handedOver = Atomic<Int>(0)

    // Loop-confined.
    private var queue: NotificationQueue
    private var inFlight: [ObjectIdentifier: (NotificationQueue.Entry, WebhookConnection)] = [:]
    /// Kept-alive connections waiting for a request, the most recently used last.
    private var idle: [WebhookConnection] = []
    /// The receiver's address from getaddrinfo and until when (monotonic ns) it is used; nil for an IP literal.
    private var resolved: (address: SocketAddress, until: UInt64)?
    private var wake: (timer: TimerHandle, at: UInt64)?
    private var closed = false
    /// This notifier's own totals (the metrics are process-wide): `state()`.
    private var totals: [String: Int] = ["sent": 0, "failed": 0, "retried": 0, "collapsed": 0, "dropped": 0, "connections": 0, "resolves": 0]

    public var includesText: Bool { config.includeText }
    /// Notifications on their way from `notify` to the queue, at most: `chat-webhook-queue`, and at least 1024.
    var transitLimit: Int { max(config.queueCapacity, 1024) }

    public init(config: WebhookConfig, metrics: NotifierMetrics = .shared, logger: Logger = Logger(label: "parley.chat.notify")) throws {
        precondition(config.queueCapacity > 0 && config.concurrency > 0 && config.attempts > 0)
        self.config = config
        self.metrics = metrics
        log = logger
        tls = config.url.secure ? try TLSContext.client(trustedCertificatesFile: config.caFile, serverName: config.url.host) : nil
        queue = NotificationQueue(capacity: config.queueCapacity, intervalNanoseconds: UInt64(config.intervalSeconds * 1e9),
                                  backoffNanoseconds: UInt64(config.backoffSeconds * 1e9))
        group = try EventLoopGroup(numberOfThreads: 1, threadName: "parley-notify", logger: logger)
        loop = group.loops[0]
        _ = (metrics.sent, metrics.queued)
    }

    // MARK: ChatNotifier

    /// Any thread; returns at once. The hop to the notifier's thread is
    /// bounded too: past `transitLimit` notifications on their way (the
    /// notifier's thread far behind), one is dropped and counted.
    public func notify(_ notification: ChatNotification) {
        guard handedOver.add(1, ordering: .relaxed).newValue <= transitLimit else {
            handedOver.subtract(1, ordering: .relaxed)
            return count("dropped", metrics.dropped)
        }
        let accepted = loop.execute { [self] in
            handedOver.subtract(1, ordering: .relaxed)
            add(notification)
        }
        if !accepted { handedOver.subtract(1, ordering: .relaxed) }
    }

    /// Drops what waits, aborts what is in flight, and stops the thread.
    public func close() {
        _ = loop.execute { [self] in
            closed = true
            queue.removeAll()
            for (_, c) in inFlight.values { c.abort() }
            for c in idle { c.abort() }
            idle.removeAll()
        }
        group.syncShutdownGracefully()
    }

    /// This notifier's state for `GET /admin/chat/notifier`, given to
    /// `completion` on the notifier's thread: the URL (without its path),
    /// what waits and is in flight, and its totals. False if it has stopped.
    @discardableResult
    public func state(_ completion: @escaping @Sendable (JSONValue) -> Void) -> Bool {
        loop.execute { [self] in
            var o: [String: JSONValue] = ["url": .string("\(config.url.secure ? "https" : "http")://\(config.url.hostHeader)"),
                                          "queued": JSONValue(queue.count), "inFlight": JSONValue(inFlight.count), "idle": JSONValue(idle.count),
                                          "includeText": .bool(config.includeText)]
            for (k, v) in totals { o[k] = JSONValue(v) }
            completion(.object(o))
        }
    }

    // MARK: The queue (on the loop)

    private func add(_ n: ChatNotification) {
        guard !closed else { return }
        switch queue.add(n, now: MonotonicTime.now().nanoseconds) {
        case .queued: break
        case .collapsed: count("collapsed", metrics.collapsed)
        case .dropped: count("dropped", metrics.dropped)
        }
        pump()
    }

    /// Starts what is due while fewer than `concurrency` are in flight, and wakes up when the next falls due.
    private func pump() {
        guard !closed else { return }
        let now = MonotonicTime.now().nanoseconds
        while inFlight.count < config.concurrency, let e = queue.next(now: now) { post(e) }
        metrics.queued.set(queue.count)
        metrics.inFlight.set(inFlight.count)
        guard inFlight.count < config.concurrency, let due = queue.nextDue else { return }
        if let w = wake {
            if w.at <= due { return }
            loop.cancelTimer(w.timer)
        }
        let delay = due > now ? due - now : 0
        wake = (loop.scheduleTimer(after: .nanoseconds(Int64(delay))) { [weak self] in
            self?.wake = nil
            self?.pump()
        }, due)
    }

    private func count(_ key: String, _ counter: Counter) {
        counter.inc()
        if loop.inEventLoop { totals[key, default: 0] += 1 } else { _ = loop.execute { [self] in totals[key, default: 0] += 1 } }
    }

    // MARK: One request

    /// Sends `entry` on an idle kept-alive connection, or a new one (`fresh`, or none idle).
    private func post(_ entry: NotificationQueue.Entry, fresh: Bool = false) {
        let request = self.request(for: entry)
        let reused = fresh ? nil : idle.popLast()
        let connection = reused ?? WebhookConnection()
        inFlight[ObjectIdentifier(connection)] = (entry, connection)
        if reused != nil {
            metrics.idleConnections.set(idle.count)
        } else {
            let address: SocketAddress
            do { address = try self.address() } catch {
                return finished(connection, .failure(WebhookConnection.Failure("\(error)", kind: .connect)))
            }
            var options = TCPOptions()
            options.handshakeTimeout = .milliseconds(Int64(config.timeoutSeconds * 1000))
            do {
                try connection.connect(to: address, on: loop, options: options, tls: tls)
            } catch {   // `finished` forgets the resolved address (a connect failure)
                return finished(connection, .failure(WebhookConnection.Failure("connect \(address): \(error)", kind: .connect)))
            }
            count("connections", metrics.connections)
        }
        connection.onIdleClose = { [weak self] c in self?.dropIdle(c) }
        connection.send(request, timeout: .milliseconds(Int64(config.timeoutSeconds * 1000))) { [weak self] c, outcome in
            self?.finished(c, outcome)
        }
    }

    private func finished(_ connection: WebhookConnection, _ outcome: Result<(status: Int, reusable: Bool), WebhookConnection.Failure>) {
        guard let (entry, _) = inFlight.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        guard !closed else { return connection.abort() }
        var status: Int?
        switch outcome {
        case .success(let r):
            status = r.status
            if r.reusable && connection.sentAll && config.idleSeconds > 0 && idle.count < config.concurrency {
                connection.park(idleFor: .milliseconds(Int64(config.idleSeconds * 1000)))
                idle.append(connection)
                metrics.idleConnections.set(idle.count)
            } else if connection.sentAll {
                connection.close()
            } else {
                connection.abort()   // answered before all of the request was sent: the rest is not needed
            }
        case .failure(let f):
            if f.kind == .connect { resolved = nil }
            if f.stale {   // the receiver closed the kept-alive connection as it was reused: not an attempt
                post(entry, fresh: true)
                return pump()
            }
            metrics.errors[f.kind]?.inc()
        }
        if let s = status, (200..<300).contains(s) {
            count("sent", metrics.sent)
        } else if let s = status, s != 408, s != 429, s < 500 {
            count("failed", metrics.failed)
            log.warn("chat webhook refused a notification", ["status": .int(s), "user": .string(entry.notification.user)])
        } else if entry.attempts >= config.attempts {
            count("failed", metrics.failed)
            log.warn("chat webhook failed, giving up", ["attempts": .int(entry.attempts), "user": .string(entry.notification.user),
                                                        "error": .string(status.map { "status \($0)" } ?? Self.reason(outcome))])
        } else {
            count("retried", metrics.retried)
            if queue.retry(entry, now: MonotonicTime.now().nanoseconds) == .dropped { count("dropped", metrics.dropped) }
        }
        pump()
    }

    /// An idle connection closed (the receiver, or the idle time ran out).
    private func dropIdle(_ connection: WebhookConnection) {
        idle.removeAll { $0 === connection }
        metrics.idleConnections.set(idle.count)
    }

    private static func reason(_ outcome: Result<(status: Int, reusable: Bool), WebhookConnection.Failure>) -> String {
        if case .failure(let f) = outcome { return f.description }
        return ""
    }

    /// The signed request: `X-Parley-Signature: sha256=HEX(HMAC-SHA256(secret, TIMESTAMP "." BODY))`.
    func request(for entry: NotificationQueue.Entry) -> [UInt8] {
        let body = Array(Self.payload(entry, includeText: config.includeText).serialized.utf8)
        let timestamp = String(Int64(Date().timeIntervalSince1970))
        let signature = Self.signature(secret: config.secret, timestamp: timestamp, body: body)
        let head = "POST \(config.url.target) HTTP/1.1\r\nHost: \(config.url.hostHeader)\r\nUser-Agent: parley\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\(config.idleSeconds > 0 ? "" : "Connection: close\r\n")"
            + "X-Parley-Delivery: \(entry.id)\r\nX-Parley-Timestamp: \(timestamp)\r\nX-Parley-Signature: sha256=\(signature)\r\n\r\n"
        return Array(head.utf8) + body
    }

    /// The JSON a receiver gets (docs/protocol.md).
    static func payload(_ entry: NotificationQueue.Entry, includeText: Bool) -> JSONValue {
        let n = entry.notification
        var o: [String: JSONValue] = [
            "type": "chat.notification", "id": .string(entry.id), "user": .string(n.user), "conversation": JSONValue(Int(n.conversation)),
            "sender": .string(n.sender), "group": .bool(n.group), "count": JSONValue(n.count), "priority": .string(n.priority.name),
            "attempt": JSONValue(entry.attempts),
        ]
        if includeText, let text = n.text { o["text"] = .string(Self.cut(text, toBytes: 200)) }
        return .object(o)
    }

    /// Lowercase hex HMAC-SHA256 of `timestamp + "." + body`.
    public static func signature(secret: [UInt8], timestamp: String, body: [UInt8]) -> String {
        Hex.encode(MAC.hmacSHA256(key: secret, data: Array(timestamp.utf8) + [0x2E] + body))
    }

    /// The longest prefix of `s` of at most `n` UTF-8 bytes that ends on a character.
    static func cut(_ s: String, toBytes n: Int) -> String {
        guard s.utf8.count > n else { return s }
        var out = ""
        for c in s {
            guard out.utf8.count + c.utf8.count <= n else { break }
            out.append(c)
        }
        return out
    }

    /// The receiver's address: an IP literal as is (`localhost` is 127.0.0.1); a name through getaddrinfo, on
    /// this thread, reused for `resolveTTLSeconds` (a failed connect forgets it).
    private func address() throws -> SocketAddress {
        if let a = SocketAddress(ip: config.url.host == "localhost" ? "127.0.0.1" : config.url.host, port: config.url.port) { return a }
        let now = MonotonicTime.now().nanoseconds
        if let r = resolved, now < r.until { return r.address }
        count("resolves", metrics.resolves)
        let a = try Self.resolve(config.url)
        resolved = (a, now + UInt64(config.resolveTTLSeconds * 1e9))
        return a
    }

    static func resolve(_ url: WebhookURL) throws -> SocketAddress {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let r = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard r == 0, let first = list else { throw WebhookConnection.Failure("cannot resolve \(url.host): \(String(cString: gai_strerror(r)))", kind: .connect) }
        defer { freeaddrinfo(list) }
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let sa = ai.pointee.ai_addr, let a = SocketAddress(UnsafeRawPointer(sa), length: Int(ai.pointee.ai_addrlen)) { return a }
            p = ai.pointee.ai_next
        }
        throw WebhookConnection.Failure("cannot resolve \(url.host)", kind: .connect)
    }
}

/// One kept-alive connection to the receiver, on the notifier's loop: a
/// request at a time (`send`), its whole response read, then idle
/// (`park`) until the next request, the receiver's close or the idle time.
final class WebhookConnection: TCPConnectionHandler {
    struct Failure: Error, CustomStringConvertible {
        /// Why no status came (`parley_chat_notifications_errors_total{reason}`).
        enum Kind: String, CaseIterable, Sendable {
            /// No connection: the name did not resolve or the connect failed (forget the resolved address).
            case connect
            /// The connection closed before the response's end.
            case closed
            /// The response broke HTTP or a bound of the reader (head, chunk-size or trailer line).
            case badResponse = "bad_response"
            /// No whole response within `chat-webhook-timeout-ms`.
            case timeout
        }
        let description: String
        let kind: Kind
        /// The connection had carried a request before and closed before a byte of this one's response:
        /// the receiver closed it as it was reused (send again on a new connection).
        var stale = false
        init(_ d: String, kind: Kind, stale: Bool = false) {
            description = d
            self.kind = kind
            self.stale = stale
        }
    }

    typealias Done = (WebhookConnection, Result<(status: Int, reusable: Bool), Failure>) -> Void

    private var connection: TCPConnection?
    private var reader = HTTPResponseReader()
    private var done: Done?
    private var timer: TimerHandle?
    /// Requests sent on this connection before the one in flight.
    private var served = 0
    private var responseStarted = false
    /// Called when the connection closes while idle (parked).
    var onIdleClose: ((WebhookConnection) -> Void)?

    func connect(to address: SocketAddress, on loop: EventLoop, options: TCPOptions, tls: TLSContext?) throws {
        connection = try TCPConnection.connect(to: address, on: loop, options: options, tls: tls, handler: self)
    }

    /// Writes `request` and calls `done` once with its status (whole response read) or why not.
    func send(_ request: [UInt8], timeout: Duration, done: @escaping Done) {
        guard let c = connection, c.isOpen else { return done(self, .failure(Failure("closed", kind: .closed, stale: served > 0))) }
        if let t = timer { c.loop.cancelTimer(t) }
        self.done = done
        responseStarted = false
        c.write(request)
        timer = c.loop.scheduleTimer(after: timeout) { [weak self] in
            guard let self else { return }
            timer = nil
            finish(.failure(Failure("timed out", kind: .timeout)))
            abort()
        }
    }

    /// Waits idle for the next request, closed after `idleFor`.
    func park(idleFor: Duration) {
        guard let c = connection else { return }
        served += 1
        timer = c.loop.scheduleTimer(after: idleFor) { [weak self] in
            self?.timer = nil
            self?.close()
        }
    }

    func close() { connection?.close() }
    func abort() { connection?.abort() }

    /// Nothing of the request is left to send (a receiver may answer before it has read all of it). Only such a
    /// connection is kept for the next request (else it is aborted), so its write queue never holds more than the
    /// request in flight and needs no cap of its own (`TCPOptions.maxQueuedWriteBytes`).
    var sentAll: Bool { connection?.pendingWriteBytes == 0 }

    private func finish(_ outcome: Result<(status: Int, reusable: Bool), Failure>) {
        if let t = timer, let c = connection { c.loop.cancelTimer(t) }
        timer = nil
        guard let d = done else { return }
        done = nil
        d(self, outcome)
    }

    func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        guard done != nil else { return connection.abort() }   // bytes nobody asked for
        responseStarted = true
        reader.append(bytes)
        do {
            guard case .response(let status, let reusable) = try reader.next() else { return }
            finish(.success((status, reusable && reader.bufferedByteCount == 0)))
        } catch {
            finish(.failure(Failure("bad response: \(error)", kind: .badResponse)))
            connection.abort()
        }
    }

    func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) {
        if let t = timer { connection.loop.cancelTimer(t) }
        timer = nil
        if done == nil {
            onIdleClose?(self)
        } else {
            var kind = Failure.Kind.closed
            if case .connectFailed = reason { kind = .connect }
            finish(.failure(Failure("closed before the response's end: \(reason)", kind: kind, stale: served > 0 && !responseStarted)))
        }
        onIdleClose = nil
        self.connection = nil
    }
}
