import ParleyCore
import ParleyHTTP
import ParleyIO

/// Why a request (or a client) failed.
public enum SignallingClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered `request` (its type) with an `error`.
    case refused(request: String, SignallingError)
    /// Nothing came within the timeout (`what`: "reply to join", "WebSocket handshake").
    case timedOut(String)
    /// The connection closed first: the server's close code (nil when it sent
    /// none) and, when the connection failed, why.
    case closed(code: UInt16?, reason: String?)
    /// Anything else a client runs into, in one sentence (a bad server URL,
    /// a refused connection, no STUN answer).
    case failed(String)

    public var description: String {
        switch self {
        case .refused(let request, let e): return "\(request) failed: \(e)"
        case .timedOut(let what): return "timed out waiting for \(what)"
        case .closed(let code, let reason):
            return "connection closed" + (reason.map { ": \($0)" } ?? "") + (code.map { " (close code \($0))" } ?? "")
        case .failed(let s): return s
        }
    }
}

/// Receives a ``SignallingClient``'s events, on the client's loop. Every
/// method has an empty default.
public protocol SignallingClientHandler: AnyObject {
    /// The WebSocket handshake is done; requests made before it are on their way.
    func signallingClientDidConnect(_ client: SignallingClient)
    /// A server event: any message that answers no pending request (events
    /// have no `id`; an `error` about a message without an id has a null one).
    /// Text that is not JSON comes as `{"type": "unparseable", "text": …}`.
    func signallingClient(_ client: SignallingClient, received event: JSONValue)
    /// The connection closed; every pending request has already been failed
    /// with ``SignallingClientError/closed(code:reason:)``. Called exactly once.
    /// - Parameters:
    ///   - code: the server's close code, nil when it sent no close frame.
    ///   - reason: why, when the connection failed (refused, TLS, a refused
    ///     handshake, a protocol error, a timeout); nil after a clean close.
    func signallingClient(_ client: SignallingClient, didCloseWith code: UInt16?, reason: String?)
}

extension SignallingClientHandler {
    public func signallingClientDidConnect(_ client: SignallingClient) {}
    public func signallingClient(_ client: SignallingClient, received event: JSONValue) {}
    public func signallingClient(_ client: SignallingClient, didCloseWith code: UInt16?, reason: String?) {}
}

/// The signalling protocol's client, over ws:// or wss://, confined to one
/// ``EventLoop``: no locks, no threads, and one loop timer at most (the
/// earliest of the handshake deadline, the request deadlines and the next
/// keepalive), so one loop carries thousands of them.
///
/// Loop-bound like ``TCPConnection``: every method must be called on its
/// loop's thread (asserted), and every callback runs there. Requests get
/// increasing integer ids; each reply is matched to its request by `id`,
/// whatever the order the server answers in. For a caller on another thread
/// (tools, tests) ``BlockingSignallingClient`` waits on top of this.
public final class SignallingClient: TCPConnectionHandler, @unchecked Sendable {
    /// What a request ends with: the reply (`"ok": true`) or why there was none.
    public typealias Completion = (Result<JSONValue, SignallingClientError>) -> Void

    private struct Pending {
        let id: Int
        let type: String
        let deadline: UInt64
        let completion: Completion
    }

    private enum State { case handshaking, open, closing, closed }

    public let loop: EventLoop
    private var handler: (any SignallingClientHandler)?
    private var tcp: TCPConnection?
    private var state = State.handshaking
    private let expectedAccept: String
    private var head: [UInt8] = []
    private var decoder = WebSocketMessageDecoder(role: .client)
    private let encoder = WebSocketFrameEncoder(role: .client)
    /// Frames sent before the handshake finished, written once it has.
    private var early: [UInt8] = []
    /// Scratch for one outgoing frame, reused.
    private var frame: [UInt8] = []
    private var failure: String?
    private var nextID = 0
    private var pending: [Pending] = []
    private let handshakeDeadline: UInt64
    private var timer: TimerHandle?
    private var timerDeadline = UInt64.max
    private var nextKeepalive = UInt64.max

    /// The server's close code, once it sent one.
    public private(set) var closeCode: UInt16?

    private init(loop: EventLoop, expectedAccept: String, handshakeDeadline: UInt64, handler: any SignallingClientHandler) {
        self.loop = loop
        self.expectedAccept = expectedAccept
        self.handshakeDeadline = handshakeDeadline
        self.handler = handler
    }

    /// Starts connecting and the WebSocket handshake. Loop only. The handler
    /// hears `didConnect` when the server accepted the upgrade, or
    /// `didCloseWith` (with the reason) when it did not, or not within
    /// `handshakeTimeout`. Requests may be made at once; they are sent after
    /// the handshake.
    /// - Parameters:
    ///   - host: the Host header (and what a TLS layer verifies, if it does).
    ///   - tls: a client TLS context for wss://, nil for ws://.
    /// - Throws: when no socket could be opened or the connect failed at once.
    ///   - localAddress: the source address to connect from (nil: the kernel's choice).
    public static func connect(to address: SocketAddress, host: String, path: String = "/ws", tls: TLSContext? = nil,
                               on loop: EventLoop, handshakeTimeout: Duration = .seconds(10), localAddress: SocketAddress? = nil,
                               handler: any SignallingClientHandler) throws(SystemError) -> SignallingClient {
        loop.preconditionInLoop()
        let (request, expectedAccept) = WebSocketHandshake.clientRequest(host: host, path: path)
        let client = SignallingClient(loop: loop, expectedAccept: expectedAccept,
                                      handshakeDeadline: MonotonicTime.now().adding(handshakeTimeout).nanoseconds, handler: handler)
        let tcp = try TCPConnection.connect(to: address, on: loop, tls: tls, localAddress: localAddress, handler: client)
        client.tcp = tcp
        tcp.write(request)
        client.armTimer()
        return client
    }

    /// True from the handshake until the connection starts closing.
    public var isOpen: Bool { state == .open }

    /// Requests sent and not yet answered.
    public var pendingRequestCount: Int { pending.count }

    /// Sends `r` with the next id and calls `completion` once, on the loop:
    /// with the reply, with `.refused` for an `error` reply, with `.timedOut`
    /// after `timeout`, or with `.closed` when the connection closes first
    /// (at once, if it already has). Loop only.
    public func request(_ r: ClientRequest, timeout: Duration = .seconds(10), completion: @escaping Completion) {
        loop.assertInLoop()
        guard state == .handshaking || state == .open else {
            completion(.failure(.closed(code: closeCode, reason: failure)))
            return
        }
        nextID += 1
        let deadline = MonotonicTime.now().adding(timeout).nanoseconds
        pending.append(Pending(id: nextID, type: r.type, deadline: deadline, completion: completion))
        send(text: ClientMessage(id: JSONValue(nextID), request: r).encoded)
        armTimer()
    }

    /// Sends a `ping` request every `interval` while the connection is open,
    /// answer or not (nil: never). A participant that sends no media keeps its
    /// session alive this way: the server counts a request as activity. Loop only.
    public var keepaliveInterval: Duration? {
        didSet {
            loop.assertInLoop()
            nextKeepalive = keepaliveInterval.map { MonotonicTime.now().adding($0).nanoseconds } ?? .max
            armTimer()
        }
    }

    /// Sends text as one message, as is (tests of malformed input). Loop only.
    public func send(text: String) {
        send(frame: WebSocketFrame(opcode: .text, payload: Array(text.utf8)))
    }

    /// Sends one frame as is, masked as a client must (tests of framing). Loop only.
    public func send(frame f: WebSocketFrame) {
        loop.assertInLoop()
        switch state {
        case .handshaking:
            encoder.write(f, into: &early)
        case .open:
            frame.removeAll(keepingCapacity: true)
            encoder.write(f, into: &frame)
            tcp?.write(frame)
        case .closing, .closed:
            break
        }
    }

    /// Sends a close frame and closes the connection once it is written,
    /// without waiting for the server's close frame. Loop only.
    public func close(code: WebSocketCloseCode = .normalClosure) {
        loop.assertInLoop()
        guard let tcp, state == .handshaking || state == .open else { return }
        if state == .open { tcp.write(encoder.close(code: code)) }
        state = .closing
        tcp.close()
    }

    /// Drops the connection without a close frame (what a lost network looks
    /// like to the server). Loop only.
    public func abort() {
        loop.assertInLoop()
        tcp?.abort()
    }

    // MARK: Connection events

    public func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        if state == .handshaking {
            head.append(contentsOf: bytes)
            let parsed: (head: HTTPResponseHead, consumed: Int)?
            do { parsed = try HTTPResponseHead.parse(head) } catch {
                return fail("bad response head: \(error)")
            }
            guard let (response, consumed) = parsed else { return }
            guard response.status.code == 101 else {
                return fail("handshake refused: \(response.status.code) \(response.status.reason)")
            }
            guard WebSocketHandshake.isAccepted(response, expectedAccept: expectedAccept) else {
                return fail("handshake not accepted (Upgrade, Connection or Sec-WebSocket-Accept)")
            }
            state = .open
            decoder.append(head[consumed...])
            head = []
            if !early.isEmpty {
                connection.write(early)
                early = []
            }
            if let interval = keepaliveInterval { nextKeepalive = MonotonicTime.now().adding(interval).nanoseconds }
            armTimer()
            handler?.signallingClientDidConnect(self)
        } else {
            decoder.append(bytes)
        }
        readMessages(connection)
    }

    private func readMessages(_ connection: TCPConnection) {
        while state == .open {
            let message: WebSocketMessage?
            do { message = try decoder.nextMessage() } catch {
                connection.write(encoder.encode(WebSocketMessageDecoder.closeFrame(for: error)))
                failure = "\(error)"
                state = .closing
                connection.close()
                return
            }
            guard let message else { return }
            switch message {
            case .text(let text): received(text)
            case .ping(let payload): connection.write(encoder.pong(payload))
            case .close(let code, _):
                // Echo the close (RFC 6455 §5.5.1), then close the TCP connection: the server waits for that.
                closeCode = code?.rawValue
                connection.write(code.map { encoder.close(code: $0) } ?? encoder.encode(WebSocketFrame(opcode: .close, payload: [])))
                state = .closing
                connection.close()
            case .binary, .pong: break
            }
        }
    }

    private func received(_ text: String) {
        guard let message = try? JSONValue.parse(text) else {
            handler?.signallingClient(self, received: ["type": "unparseable", "text": .string(text)])
            return
        }
        guard let id = message["id"]?.intValue, let i = pending.firstIndex(where: { $0.id == id }) else {
            handler?.signallingClient(self, received: message)
            return
        }
        let p = pending.remove(at: i)
        if message["type"] == "error" {
            p.completion(.failure(.refused(request: p.type, SignallingError(reply: message))))
        } else {
            p.completion(.success(message))
        }
    }

    public func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) {
        let wasOpen = state == .open || state == .closing
        state = .closed
        tcp = nil
        if let timer { loop.cancelTimer(timer) }
        timer = nil
        // A clean close (ours, or after the server's close frame) has no reason to give.
        if failure == nil, reason != .local, !(wasOpen && closeCode != nil) { failure = "\(reason)" }
        let failed = pending
        pending = []
        for p in failed { p.completion(.failure(.closed(code: closeCode, reason: failure))) }
        let h = handler
        handler = nil
        h?.signallingClient(self, didCloseWith: closeCode, reason: failure)
    }

    private func fail(_ why: String) {
        failure = why
        state = .closing
        tcp?.abort()
    }

    // MARK: The one timer

    /// Schedules the timer for the earliest deadline, unless it already fires by then.
    private func armTimer() {
        var next = nextKeepalive
        if state == .handshaking { next = min(next, handshakeDeadline) }
        for p in pending where p.deadline < next { next = p.deadline }
        guard next < timerDeadline, state != .closed else { return }
        if let timer { loop.cancelTimer(timer) }
        timerDeadline = next
        let now = MonotonicTime.now().nanoseconds
        timer = loop.scheduleTimer(after: .nanoseconds(Int64(next > now ? next - now : 0))) { [weak self] in self?.timerFired() }
    }

    private func timerFired() {
        timer = nil
        timerDeadline = .max
        let now = MonotonicTime.now().nanoseconds
        if state == .handshaking && handshakeDeadline <= now {
            return fail("timed out waiting for the WebSocket handshake")
        }
        var expired: [Pending] = []
        pending.removeAll { p in
            guard p.deadline <= now else { return false }
            expired.append(p)
            return true
        }
        if nextKeepalive <= now, let interval = keepaliveInterval {
            nextKeepalive = MonotonicTime.now().adding(interval).nanoseconds
            if state == .open { request(.ping, timeout: interval) { _ in } }
        }
        for p in expired { p.completion(.failure(.timedOut("reply to \(p.type)"))) }
        armTimer()
    }
}

extension SignallingError {
    /// The error an `error` message carries (a code this client does not
    /// know is kept in the message, under `internal`).
    init(reply: JSONValue) {
        let raw = reply["code"]?.stringValue ?? ""
        let message = reply["message"]?.stringValue ?? ""
        if let code = SignallingErrorCode(rawValue: raw) {
            self.init(code, message, id: reply["id"] ?? .null, retryAfterMilliseconds: reply["retryAfter"]?.intValue)
        } else {
            self.init(.internalError, "\(raw): \(message)", id: reply["id"] ?? .null)
        }
    }
}
