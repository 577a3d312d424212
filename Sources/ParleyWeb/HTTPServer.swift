import Foundation
import Synchronization
import ParleyCore
import ParleyHTTP
import ParleyIO

/// The HTTP/1.1 + WebSocket server: one listening socket on the first loop,
/// accepted connections handed round-robin to the group's loops (signalling is
/// not the packet path; one accept loop is plenty). TLS when a `TLSContext`
/// is given, plain otherwise.
///
/// ```swift
/// let router = HTTPRouter()
/// router.add("GET", .exact("/healthz"), sync: { _ in .json(["status": "ok"]) })
/// let server = HTTPServer(group: group, router: router, tls: nil)
/// let bound = try server.start(at: SocketAddress("127.0.0.1:7700")!)
/// ```
public final class HTTPServer: Sendable {
    /// What one client may hold of the server: connections, time, memory.
    /// The defaults are `parley serve`'s (docs/security.md).
    public struct Limits: Sendable {
        /// A connection with no traffic this long is closed (WebSocket
        /// connections get a ping every third of it, so only dead peers hit it).
        public var idleTimeout: Duration = .seconds(60)
        /// The TLS handshake must finish this long after the accept.
        public var tlsHandshakeTimeout: Duration = .seconds(10)
        /// A request head must be complete this long after the connection is
        /// ready for it: after the accept (and TLS handshake), or after the
        /// previous response on a keep-alive connection. Bytes arriving do not
        /// extend it (the idle timeout does not stop a slowloris; this does).
        public var requestHeadTimeout: Duration = .seconds(10)
        /// Bytes queued for a client that does not read before its connection
        /// is closed (WebSocket: close code 4009, ``WebSocketCloseCode/slowConsumer``).
        public var maxQueuedBytes = 1 << 20
        /// Open connections, overall and from one source IP; an accept over
        /// either is closed at once.
        public var maxConnections = 10_000
        public var maxConnectionsPerIP = 100

        public init() {}
    }

    public let group: EventLoopGroup
    public let router: HTTPRouter
    public let tls: TLSContext?
    public let limits: Limits
    let logger: Logger
    let options: TCPOptions
    let counts = ConnectionCounts()
    /// Per loop, what other threads send to its WebSocket connections (`WebSocketConnection.send`).
    let outboxes: [Inbox<WebSocketConnection.Sent>]
    private let listener = Mutex<TCPListener?>(nil)

    public init(group: EventLoopGroup, router: HTTPRouter, tls: TLSContext?, limits: Limits = Limits(),
                logger: Logger = Logger(label: "parley.http")) {
        self.group = group
        self.router = router
        self.tls = tls
        self.limits = limits
        self.logger = logger
        var o = TCPOptions()
        o.idleTimeout = limits.idleTimeout
        o.handshakeTimeout = limits.tlsHandshakeTimeout
        o.maxQueuedWriteBytes = limits.maxQueuedBytes
        // Stop reading (and answering pipelined requests) well before the cap.
        o.highWaterMark = limits.maxQueuedBytes / 2
        o.lowWaterMark = limits.maxQueuedBytes / 8
        self.options = o
        outboxes = group.loops.map { loop in Inbox(post: { loop.execute($0) }, handle: WebSocketConnection.write) }
    }

    /// Binds and starts accepting. Returns the bound address (the real port
    /// when `address` has port 0). Any thread but the loops'.
    @discardableResult
    public func start(at address: SocketAddress) throws -> SocketAddress {
        let loop = group.loops[0]
        let l = try loop.submit { () throws -> TCPListener in
            try TCPListener(loop: loop, bindTo: address, reusePort: false) { [self] sock in self.accepted(sock) }
        }
        listener.withLock { $0 = l }
        return l.localAddress
    }

    /// On the listener's loop: admit the socket under the connection caps and
    /// hand it to the next loop, or close it at once.
    private func accepted(_ sock: AcceptedSocket) {
        let ip = sock.remoteAddress.withPort(0)
        if let refusal = counts.admit(ip, limits: limits) {
            HTTPConnectionHandler.metrics.refused(refusal).inc()
            sock.close()
            return
        }
        let target = group.next()
        let adopt: @Sendable () -> Void = { [self] in
            let h = HTTPConnectionHandler(router: router, logger: logger, limits: limits, outbox: outboxes[target.index]) { [counts] in
                counts.release(ip)
            }
            do { try TCPConnection.adopt(sock, on: target, options: options, tls: tls, handler: h) } catch {
                counts.release(ip)
                logger.warn("adopt failed", ["error": .string("\(error)")])
            }
        }
        if target.inEventLoop { adopt() } else { target.execute(adopt) }
    }

    /// Stops accepting (open connections stay until the loops shut down).
    public func stop() {
        guard let l = listener.withLock({ l -> TCPListener? in let x = l; l = nil; return x }) else { return }
        if l.loop.inEventLoop { l.close() } else { try? l.loop.submit { l.close() } }
    }
}

/// Open connections, overall and per source IP, for the caps of
/// ``HTTPServer/Limits``. Admitted on the listener's loop, released from any.
final class ConnectionCounts: Sendable {
    enum Refusal { case total, perIP }
    private let state = Mutex<(total: Int, perIP: [SocketAddress: Int])>((0, [:]))

    func admit(_ ip: SocketAddress, limits: HTTPServer.Limits) -> Refusal? {
        state.withLock { s in
            if s.total >= limits.maxConnections { return .total }
            let n = s.perIP[ip, default: 0]
            if n >= limits.maxConnectionsPerIP { return .perIP }
            s.total += 1
            s.perIP[ip] = n + 1
            return nil
        }
    }

    func release(_ ip: SocketAddress) {
        state.withLock { s in
            s.total -= 1
            let n = s.perIP[ip, default: 1] - 1
            s.perIP[ip] = n > 0 ? n : nil
        }
    }

    var total: Int { state.withLock { $0.total } }
}

private let connectionIDs = Atomic<UInt64>(0)

/// A WebSocket connection after the handshake. `send`/`close` may be called
/// from any thread; they hop to the connection's loop.
public final class WebSocketConnection: @unchecked Sendable {
    /// Process-unique id.
    public let id: UInt64
    public let loop: EventLoop
    public let remoteAddress: SocketAddress
    /// Loop-confined.
    weak var tcp: TCPConnection?
    var closing = false
    /// Closed because the peer did not read what was queued for it.
    var slowConsumer = false
    let encoder = WebSocketFrameEncoder(role: .server)
    /// The service's per-connection budget of incoming messages (see
    /// `SignallingService`); loop-confined.
    public var requestBudget: TokenBucket?
    /// Messages refused in a row by `requestBudget`; loop-confined.
    public var refusedInARow = 0

    init(loop: EventLoop, tcp: TCPConnection, outbox: Inbox<Sent>) {
        self.id = connectionIDs.wrappingAdd(1, ordering: .relaxed).newValue
        self.loop = loop
        self.tcp = tcp
        self.remoteAddress = tcp.remoteAddress
        self.outbox = outbox
    }

    /// A message sent from another thread, waiting for the connection's loop.
    typealias Sent = (connection: WebSocketConnection, text: String)

    /// The loop's messages from other threads, for all its connections: what
    /// gathers before the loop gets to it costs the loop one hop, and each
    /// connection one write (one syscall, fewer packets).
    private let outbox: Inbox<Sent>
    /// Frames of the batch being written; loop-confined, empty between batches.
    private var frames: [UInt8] = []

    /// Sends one text message. A message that would take the bytes queued
    /// for the peer past ``HTTPServer/Limits/maxQueuedBytes`` is not sent:
    /// the connection is closed with ``SignallingCloseCode/slowConsumer`` instead.
    public func send(text: String) {
        if loop.inEventLoop {
            flushOutbox()
            encoder.appendText(text, to: &frames)
            writeFrames()
            return
        }
        outbox.add((self, text))
    }

    /// Writes a batch of messages from other threads, each connection's in
    /// the order they were sent and in one write. Loop only.
    static func write(_ batch: [Sent]) {
        var touched: [WebSocketConnection] = []
        for (ws, text) in batch {
            if ws.frames.isEmpty { touched.append(ws) }
            ws.encoder.appendText(text, to: &ws.frames)
        }
        for ws in touched { ws.writeFrames() }
    }

    /// Writes what other threads sent to this loop's connections until now, this one's first. Loop only.
    private func flushOutbox() {
        writeFrames()
        outbox.run()
    }

    /// Writes `frames`. Loop only.
    private func writeFrames() {
        guard !frames.isEmpty else { return }
        let f = frames
        frames = []
        write(f)
    }

    /// Writes encoded frames, or closes a connection whose peer leaves them unread. Loop only.
    private func write(_ frames: [UInt8]) {
        guard !closing, let tcp else { return }
        if let cap = tcp.options.maxQueuedWriteBytes, tcp.pendingWriteBytes + frames.count > cap {
            slowConsumer = true
            HTTPConnectionHandler.metrics.slowConsumers.inc()
            closeNow(code: .slowConsumer, reason: "slow consumer")
            return
        }
        tcp.write(frames)
    }

    /// How long a closing connection waits for the peer to close its side.
    static let lingerTime: Duration = .seconds(2)

    /// Sends a close frame and closes the TCP connection (see ``closeNow``).
    public func close(code: UInt16, reason: String) {
        run { ws in ws.closeNow(code: WebSocketCloseCode(code), reason: reason) }
    }

    /// Sends a close frame, then half-closes: the peer reads the frame and
    /// closes its side (RFC 6455 §7.1.1: the server should let the client
    /// close the TCP connection first); what it still sends is read and
    /// discarded. Closing at once with unread input (say, the rest of an
    /// oversized message) would send a TCP RST, and the RST can destroy the
    /// close frame before the client reads it. After ``lingerTime`` without
    /// the peer's close, the connection is aborted.
    func closeNow(code: WebSocketCloseCode, reason: String) {
        guard !closing, let tcp else { return }
        flushOutbox() // what was sent before the close goes before the close frame
        guard !closing else { return } // the flush found a slow consumer and closed
        closing = true
        tcp.write(encoder.close(code: code, reason: String(reason.utf8.prefix(120)) ?? ""))
        tcp.shutdownWrite()
        _ = loop.scheduleTimer(after: Self.lingerTime) { [weak tcp] in tcp?.abort() }
    }

    private func run(_ body: @escaping @Sendable (WebSocketConnection) -> Void) {
        if loop.inEventLoop { body(self) } else { loop.execute { body(self) } }
    }
}

/// One accepted connection: HTTP requests (pipelined, answered in order),
/// then possibly a WebSocket. Loop-confined.
final class HTTPConnectionHandler: TCPConnectionHandler, @unchecked Sendable {
    enum Mode { case http, websocket, closed }

    let router: HTTPRouter
    let logger: Logger
    let requestHeadTimeout: Duration
    /// Releases the connection's place under the connection caps.
    let released: () -> Void
    var mode = Mode.http
    var parser = HTTPRequestParser()
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    /// Where the current request's body goes instead of `body` (streaming routes).
    var bodySink: (any HTTPBodySink)?
    /// A request is being handled; later requests wait in the parser.
    var awaitingResponse = false
    var file: FileStream?
    var keepAliveAfterFile = true
    /// Fires when a request head has not arrived in time (see ``HTTPServer/Limits/requestHeadTimeout``).
    var headDeadline: TimerHandle?
    weak var connection: TCPConnection?

    // WebSocket mode
    var decoder = WebSocketMessageDecoder(role: .server)
    var ws: WebSocketConnection?
    var wsService: (any WebSocketService)?
    var pingTimer: TimerHandle?
    /// Monotonic time of the last bytes from the peer (pongs included).
    var lastRead = MonotonicTime.now()

    static let metrics = HTTPMetrics()

    /// The loop's WebSocket outbox (see `WebSocketConnection.send`).
    let outbox: Inbox<WebSocketConnection.Sent>

    init(router: HTTPRouter, logger: Logger, limits: HTTPServer.Limits, outbox: Inbox<WebSocketConnection.Sent>,
         released: @escaping () -> Void) {
        self.router = router
        self.outbox = outbox
        self.logger = logger
        self.requestHeadTimeout = limits.requestHeadTimeout
        self.released = released
    }

    func connectionDidBecomeActive(_ connection: TCPConnection) {
        self.connection = connection
        armHeadDeadline(connection)
    }

    func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        self.connection = connection
        lastRead = MonotonicTime.now()
        switch mode {
        case .http:
            parser.append(bytes)
            processRequests(connection)
        case .websocket:
            if ws?.closing == true { return } // lingering after our close frame: discard
            decoder.append(bytes)
            processFrames(connection)
        case .closed:
            break
        }
    }

    func connection(_ connection: TCPConnection, writabilityChanged writable: Bool) {
        guard writable else { return }
        pumpFile(connection)
        if mode == .http && file == nil && !awaitingResponse { processRequests(connection) }
    }

    func connectionDidDrain(_ connection: TCPConnection) { pumpFile(connection) }

    func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) {
        let wasWS = mode == .websocket
        mode = .closed
        released()
        switch reason {
        case .handshakeTimeout: Self.metrics.tlsHandshakeDeadline.inc()
        case .writeQueueFull where ws?.slowConsumer != true: Self.metrics.slowConsumers.inc()
        default: break
        }
        file?.close()
        file = nil
        bodySink?.abort()
        bodySink = nil
        if let t = pingTimer { connection.loop.cancelTimer(t); pingTimer = nil }
        cancelHeadDeadline(connection.loop)
        if wasWS, let ws, let wsService {
            ws.closing = true
            wsService.webSocketClosed(ws)
        }
        ws = nil
        wsService = nil
    }

    // MARK: HTTP

    /// Starts the wait for the next request head (absolute: bytes that
    /// arrive meanwhile do not extend it).
    private func armHeadDeadline(_ c: TCPConnection) {
        guard mode == .http, headDeadline == nil else { return }
        headDeadline = c.loop.scheduleTimer(after: requestHeadTimeout) { [weak self, weak c] in
            guard let self, let c else { return }
            self.headDeadline = nil
            // A head that waits unparsed because the client leaves responses
            // unread is not late: the queued-bytes cap and idle timeout govern that.
            guard self.mode == .http, self.head == nil, !self.awaitingResponse, self.file == nil, c.isWritable else { return }
            Self.metrics.requestHeadDeadline.inc()
            if self.parser.bufferedByteCount > 0 {
                self.write(.error(.requestTimeout, "the request head did not arrive within \(self.requestHeadTimeout)"),
                           head: nil, keepAlive: false, linger: true, on: c)
            } else {
                // Nothing of a next request: close quietly, as for an idle keep-alive.
                self.mode = .closed
                c.close()
            }
        }
    }

    private func cancelHeadDeadline(_ loop: EventLoop) {
        if let t = headDeadline { loop.cancelTimer(t); headDeadline = nil }
    }

    private func processRequests(_ c: TCPConnection) {
        // Not while the client leaves responses unread: pipelined requests
        // wait (and reads pause) until the queue drains.
        while mode == .http && !awaitingResponse && c.isWritable {
            let event: HTTPRequestParser.Event
            do { event = try parser.next() } catch {
                Self.metrics.badRequests.inc()
                bodySink?.abort()
                bodySink = nil
                write(HTTPServerResponse.text(error.status, error.status.reason + "\n"), head: nil, keepAlive: false,
                      linger: true, on: c)
                return
            }
            switch event {
            case .needMoreData: return
            case .head(let h):
                cancelHeadDeadline(c.loop)
                head = h
                body = []
                if !startStreamingBody(h, on: c) { return }
            case .body(let b):
                guard let sink = bodySink else { body.append(contentsOf: b); continue }
                do { try sink.write(b) } catch {
                    bodySink = nil
                    sink.abort()
                    let r = (error as? HTTPRefusal)?.response ?? .error(.internalServerError, "cannot store the request body: \(error)")
                    write(r, head: head, keepAlive: false, linger: true, on: c)
                    return
                }
            case .end:
                guard let h = head else { return }
                head = nil
                if let sink = bodySink {
                    bodySink = nil
                    sink.finish(responder(for: h, on: c))
                } else {
                    dispatch(h, body, on: c)
                }
            }
        }
    }

    private func dispatch(_ h: HTTPRequestHead, _ body: [UInt8], on c: TCPConnection) {
        Self.metrics.requests.inc()
        guard let target = HTTPTarget(h.target) else {
            write(.error(.badRequest, "bad request target"), head: h, keepAlive: false, on: c)
            return
        }
        var req = HTTPServerRequest(head: h, path: target.path, query: target.query, body: body, remoteAddress: c.remoteAddress, loop: c.loop)
        if WebSocketHandshake.isUpgradeRequest(h) || router.webSocketService(for: target.path) != nil {
            if let service = router.webSocketService(for: target.path) {
                upgrade(req, service, on: c)
                return
            }
        }
        switch router.resolve(method: h.method, path: target.path) {
        case .notFound:
            write(.error(.notFound, "no route for \(target.path)"), head: h, keepAlive: h.keepAlive, on: c)
        case .methodNotAllowed(let allow):
            var r = HTTPServerResponse.error(.methodNotAllowed, "\(h.method) is not allowed on \(target.path)")
            r.headers.add("Allow", allow.joined(separator: ", "))
            write(r, head: h, keepAlive: h.keepAlive, on: c)
        case .handler(.whole(let handler), let remainder):
            req.pathRemainder = remainder
            handler(req, responder(for: h, on: c))
        case .handler(.streaming, _):
            // Added between this request's head and its end: it was read whole.
            write(.error(.serviceUnavailable, "try again"), head: h, keepAlive: h.keepAlive, on: c)
        }
    }

    /// Marks a request in progress and returns the responder that writes its
    /// answer on this connection's loop, then resumes parsing.
    private func responder(for h: HTTPRequestHead, on c: TCPConnection) -> HTTPResponder {
        awaitingResponse = true
        let loop = c.loop
        return HTTPResponder { [weak self, weak c] response in
            let me = self, conn = c
            let finish: @Sendable () -> Void = {
                guard let self = me, let c = conn, self.mode == .http else { return }
                self.awaitingResponse = false
                self.write(response, head: h, keepAlive: h.keepAlive, on: c)
                if self.mode == .http && !self.awaitingResponse { self.processRequests(c) }
            }
            if loop.inEventLoop { finish() } else { loop.execute(finish) }
        }
    }

    /// For a streaming route (`HTTPRouter.addStreaming`), lets the route decide
    /// on the head before any body byte is read. Returns false when it answered
    /// at once (the connection is then closing).
    private func startStreamingBody(_ h: HTTPRequestHead, on c: TCPConnection) -> Bool {
        guard let target = HTTPTarget(h.target),
              case .handler(.streaming(let decide), let remainder) = router.resolve(method: h.method, path: target.path) else {
            return true
        }
        Self.metrics.requests.inc()
        var req = HTTPServerRequest(head: h, path: target.path, query: target.query, body: [], remoteAddress: c.remoteAddress, loop: c.loop)
        req.pathRemainder = remainder
        switch decide(req) {
        case .respond(let r):
            write(r, head: h, keepAlive: false, linger: true, on: c)
            return false
        case .stream(let maxBytes, let sink):
            if case .contentLength(let n) = h.bodyLength, n > maxBytes {
                sink.abort()
                write(.error(.payloadTooLarge, "the body is \(n) bytes, more than the \(maxBytes) allowed"), head: h,
                      keepAlive: false, linger: true, on: c)
                return false
            }
            parser.allowBody(upTo: maxBytes)
            bodySink = sink
            // RFC 9110 §10.1.1: a client waiting to send a large body learns it is wanted.
            if h.headers.containsToken("100-continue", in: "Expect") { c.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
            return true
        }
    }

    /// `linger`: the peer may still be sending (a refused body); half-close and
    /// discard its input for a moment instead of closing at once, which would
    /// send a RST that can destroy the response before the client reads it
    /// (RFC 9112 §9.6).
    private func write(_ response: HTTPServerResponse, head: HTTPRequestHead?, keepAlive: Bool, linger: Bool = false,
                       on c: TCPConnection) {
        var keepAlive = keepAlive
        var response = response
        if case .file(let path, let offset, let length) = response.body {
            if let f = FileStream(path: path, offset: offset, length: length) {
                file = f
            } else {
                response = .error(.notFound, "not found")
            }
        }
        let isHead = head?.method == "HEAD"
        var out = HTTPResponse(status: response.status, headers: response.headers)
        switch response.body {
        case .bytes(let b):
            if isHead {
                out.headers.set("Content-Length", String(b.count))
            } else {
                out.body = b
            }
        case .file(_, _, let length):
            out.headers.set("Content-Length", String(length))
        }
        if response.status.code >= 400 { Self.metrics.errors.inc() }
        if parser.isClosed { keepAlive = false }
        c.write(out.serialized(keepAlive: keepAlive, date: Int(Date().timeIntervalSince1970)))
        if file != nil && !isHead {
            keepAliveAfterFile = keepAlive
            pumpFile(c)
            return
        }
        file?.close()
        file = nil
        if !keepAlive && linger {
            mode = .closed
            c.shutdownWrite()
            _ = c.loop.scheduleTimer(after: WebSocketConnection.lingerTime) { [weak c] in c?.abort() }
        } else if !keepAlive {
            mode = .closed
            c.close()
        } else {
            armHeadDeadline(c)
        }
    }

    /// Streams the pending file while the connection takes it.
    private func pumpFile(_ c: TCPConnection) {
        guard let f = file else { return }
        while c.isWritable && c.pendingWriteBytes < 256 << 10 {
            switch f.next() {
            case .chunk(let b): b.withUnsafeBytes { c.write($0) }
            case .done:
                f.close()
                file = nil
                if !keepAliveAfterFile { mode = .closed; c.close(); return }
                armHeadDeadline(c)
                if !awaitingResponse { processRequests(c) }
                return
            case .failed:
                f.close()
                file = nil
                mode = .closed
                c.abort()
                return
            }
        }
    }

    // MARK: WebSocket

    private func upgrade(_ req: HTTPServerRequest, _ service: any WebSocketService, on c: TCPConnection) {
        let response: HTTPResponse
        do { response = try WebSocketHandshake.response(to: req.head) } catch {
            Self.metrics.errors.inc()
            var r = error.response
            r.headers.set("Connection", "close")
            c.write(r.serialized(keepAlive: false))
            mode = .closed
            c.close()
            return
        }
        c.write(response.serialized(keepAlive: true))
        mode = .websocket
        Self.metrics.upgrades.inc()
        let ws = WebSocketConnection(loop: c.loop, tcp: c, outbox: outbox)
        self.ws = ws
        self.wsService = service
        // Ping at a third of the idle timeout (keeps NAT bindings, draws pongs);
        // a peer that sent nothing at all, not even a pong, for the whole
        // timeout is gone: our own pings must not keep it alive.
        let idle = c.options.idleTimeout ?? .seconds(60)
        pingTimer = c.loop.scheduleRepeatingTimer(every: idle / 3) { [weak self, weak c] in
            guard let self, let c, self.mode == .websocket else { return }
            if MonotonicTime.now().since(self.lastRead) >= idle {
                Self.metrics.wsDead.inc()
                c.abort()
                return
            }
            c.write(self.ws?.encoder.ping() ?? [])
        }
        service.webSocketOpened(ws, request: req)
        if parser.bufferedByteCount > 0 {
            // The client sent frames before seeing 101; the parser holds them
            // and offers no way to take them back, so refuse (RFC 6455 §4.1: the
            // client must wait for the handshake response).
            ws.closeNow(code: .protocolError, reason: "data before handshake completed")
        } else {
            // Done with HTTP: an idle WebSocket keeps no request buffer.
            parser = HTTPRequestParser()
        }
    }

    private func processFrames(_ c: TCPConnection) {
        guard let ws, let wsService else { return }
        while mode == .websocket && !ws.closing {
            let m: WebSocketMessage?
            do { m = try decoder.nextMessage() } catch {
                Self.metrics.wsErrors.inc()
                ws.closeNow(code: error.closeCode, reason: error.reason)
                return
            }
            guard let m else { return }
            switch m {
            case .text(let t): wsService.webSocket(ws, received: t)
            case .binary: ws.closeNow(code: .unsupportedData, reason: "binary messages are not part of the protocol")
            case .ping(let p): c.write(ws.encoder.pong(p))
            case .pong: break
            case .close(let code, _):
                ws.closeNow(code: code ?? .normalClosure, reason: "")
            }
        }
    }
}

/// Reads a file region in chunks on the loop thread. Local files only: a read
/// blocks the loop for one chunk at most.
final class FileStream {
    enum Step { case chunk([UInt8]), done, failed }
    let fd: Int32
    var offset: Int
    var remaining: Int
    static let chunkSize = 64 << 10

    init?(path: String, offset: Int, length: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.offset = offset
        self.remaining = length
    }

    func next() -> Step {
        guard remaining > 0 else { return .done }
        let n = min(remaining, Self.chunkSize)
        var buf = [UInt8](repeating: 0, count: n)
        let r = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n, off_t(offset)) }
        if r < 0 && errno == EINTR { return next() }
        guard r > 0 else { return .failed }
        offset += r
        remaining -= r
        if r < n { buf.removeLast(n - r) }
        return .chunk(buf)
    }

    func close() { _ = Glibc.close(fd) }
}

struct HTTPMetrics {
    let refusedTotal = MetricsRegistry.shared.counter("parley_http_connections_refused_total", help: "Accepted connections closed at once for a connection cap",
                                                      labels: [("reason", "max_connections")])
    let refusedPerIP = MetricsRegistry.shared.counter("parley_http_connections_refused_total", help: "Accepted connections closed at once for a connection cap",
                                                      labels: [("reason", "max_connections_per_ip")])
    let tlsHandshakeDeadline = MetricsRegistry.shared.counter("parley_http_deadline_closed_total", help: "Connections closed because a deadline passed",
                                                              labels: [("deadline", "tls_handshake")])
    let requestHeadDeadline = MetricsRegistry.shared.counter("parley_http_deadline_closed_total", help: "Connections closed because a deadline passed",
                                                             labels: [("deadline", "request_head")])
    let slowConsumers = MetricsRegistry.shared.counter("parley_http_slow_consumer_closed_total", help: "Connections closed because the client left more than the queued-bytes cap unread")
    let requests = MetricsRegistry.shared.counter("parley_http_requests_total", help: "HTTP requests received")
    let errors = MetricsRegistry.shared.counter("parley_http_error_responses_total", help: "HTTP responses with status >= 400")
    let badRequests = MetricsRegistry.shared.counter("parley_http_malformed_requests_total", help: "Requests the parser refused")
    let upgrades = MetricsRegistry.shared.counter("parley_http_websocket_upgrades_total", help: "WebSocket handshakes completed")
    let wsErrors = MetricsRegistry.shared.counter("parley_http_websocket_protocol_errors_total", help: "WebSocket connections closed for a protocol error")
    let wsDead = MetricsRegistry.shared.counter("parley_http_websocket_dead_peers_total", help: "WebSocket connections closed because the peer sent nothing (not even a pong) for the idle timeout")

    func refused(_ r: ConnectionCounts.Refusal) -> Counter { r == .total ? refusedTotal : refusedPerIP }
}
