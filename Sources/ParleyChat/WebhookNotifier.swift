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
    /// Seconds one request may take, connect to status line (`chat-webhook-timeout-ms`).
    public var timeoutSeconds = 5.0
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

    public init(registry: MetricsRegistry) {
        let name = "parley_chat_notifications_total", help = "Offline notifications (chat webhook), by outcome"
        sent = registry.counter(name, help: help, labels: [("outcome", "sent")])
        failed = registry.counter(name, help: help, labels: [("outcome", "failed")])
        retried = registry.counter(name, help: help, labels: [("outcome", "retried")])
        collapsed = registry.counter(name, help: help, labels: [("outcome", "collapsed")])
        dropped = registry.counter(name, help: help, labels: [("outcome", "dropped")])
        queued = registry.gauge("parley_chat_notifications_queued", help: "Offline notifications waiting to be posted (new or to retry)")
        inFlight = registry.gauge("parley_chat_notifications_in_flight", help: "Offline notification requests in flight to the webhook")
    }

    public static let shared = NotifierMetrics(registry: .shared)
}

/// The first `ChatNotifier`: POSTs a signed JSON document per notification
/// to a configured URL (docs/protocol.md "Offline notifications" gives the
/// payload and how to verify the signature).
///
/// It runs on a thread of its own (an event loop, "parley-notify"), so the
/// signalling loop only hands a notification over. The HTTP/1.1 client is a
/// `TCPConnection` per request (`Connection: close`, TLS for https:// with
/// the peer's certificate and name checked), reading only the status line;
/// a host name is resolved on this thread (getaddrinfo), never on the
/// signalling loop. Collapse, the per-user rate, priority, the queue's bound
/// and backoff are `NotificationQueue`'s.
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
    private var inFlight: [ObjectIdentifier: (NotificationQueue.Entry, TCPConnection?)] = [:]
    private var wake: (timer: TimerHandle, at: UInt64)?
    private var closed = false
    /// This notifier's own totals (the metrics are process-wide): `state()`.
    private var totals: [String: Int] = ["sent": 0, "failed": 0, "retried": 0, "collapsed": 0, "dropped": 0]

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
            for (_, c) in inFlight.values { c?.abort() }
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
                                          "queued": JSONValue(queue.count), "inFlight": JSONValue(inFlight.count),
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

    private func post(_ entry: NotificationQueue.Entry) {
        let exchange = WebhookExchange()
        let id = ObjectIdentifier(exchange)
        inFlight[id] = (entry, nil)
        exchange.done = { [weak self, weak exchange, loop] outcome in
            if let t = exchange?.timer { loop.cancelTimer(t) }
            self?.finished(id, outcome)
        }
        let request = self.request(for: entry)
        let address: SocketAddress
        do { address = try resolve(config.url) } catch {
            return exchange.finish(.failure(WebhookExchange.Failure("\(error)")))
        }
        var options = TCPOptions()
        options.handshakeTimeout = .milliseconds(Int64(config.timeoutSeconds * 1000))
        options.maxQueuedWriteBytes = request.count + 65536
        do {
            let c = try TCPConnection.connect(to: address, on: loop, options: options, tls: tls, handler: exchange)
            inFlight[id]?.1 = c
            c.write(request)
            exchange.timer = loop.scheduleTimer(after: .milliseconds(Int64(config.timeoutSeconds * 1000))) { [weak exchange, weak c] in
                exchange?.timer = nil
                exchange?.finish(.failure(WebhookExchange.Failure("timed out")))
                c?.abort()
            }
        } catch {
            exchange.finish(.failure(WebhookExchange.Failure("connect \(address): \(error)")))
        }
    }

    private func finished(_ id: ObjectIdentifier, _ outcome: Result<Int, WebhookExchange.Failure>) {
        guard let (entry, _) = inFlight.removeValue(forKey: id), !closed else { return }
        let status: Int?
        switch outcome {
        case .success(let s): status = s
        case .failure: status = nil
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

    private static func reason(_ outcome: Result<Int, WebhookExchange.Failure>) -> String {
        if case .failure(let f) = outcome { return f.description }
        return ""
    }

    /// The signed request: `X-Parley-Signature: sha256=HEX(HMAC-SHA256(secret, TIMESTAMP "." BODY))`.
    func request(for entry: NotificationQueue.Entry) -> [UInt8] {
        let body = Array(Self.payload(entry, includeText: config.includeText).serialized.utf8)
        let timestamp = String(Int64(Date().timeIntervalSince1970))
        let signature = Self.signature(secret: config.secret, timestamp: timestamp, body: body)
        let head = "POST \(config.url.target) HTTP/1.1\r\nHost: \(config.url.hostHeader)\r\nUser-Agent: parley\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
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
        SHA256.hex(MAC.hmacSHA256(key: secret, data: Array(timestamp.utf8) + [0x2E] + body))
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

    /// An IP literal as is (`localhost` is 127.0.0.1); a name through getaddrinfo, on this thread.
    func resolve(_ url: WebhookURL) throws -> SocketAddress {
        if let a = SocketAddress(ip: url.host == "localhost" ? "127.0.0.1" : url.host, port: url.port) { return a }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let r = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard r == 0, let first = list else { throw WebhookExchange.Failure("cannot resolve \(url.host): \(String(cString: gai_strerror(r)))") }
        defer { freeaddrinfo(list) }
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let sa = ai.pointee.ai_addr, let a = SocketAddress(UnsafeRawPointer(sa), length: Int(ai.pointee.ai_addrlen)) { return a }
            p = ai.pointee.ai_next
        }
        throw WebhookExchange.Failure("cannot resolve \(url.host)")
    }
}

/// One POST: the response's status line is all it waits for.
final class WebhookExchange: TCPConnectionHandler {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    var done: ((Result<Int, Failure>) -> Void)?
    var timer: TimerHandle?
    private var received: [UInt8] = []

    func finish(_ outcome: Result<Int, Failure>) {
        guard let d = done else { return }
        done = nil
        d(outcome)
    }


    func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        guard done != nil else { return }
        received.append(contentsOf: bytes)
        do {
            guard let (head, consumed) = try HTTPResponseHead.parse(received) else { return }
            if head.status.code < 200 {  // 1xx: the final status follows
                received.removeFirst(consumed)
                return
            }
            finish(.success(head.status.code))
        } catch {
            finish(.failure(Failure("bad response: \(error)")))
        }
        connection.close()
    }

    func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) {
        finish(.failure(Failure("closed before a status: \(reason)")))
    }
}
