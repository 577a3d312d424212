import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO

/// A ``SignallingClient`` for a caller that may wait: tools (`parley sdp`)
/// and tests. The client runs on its loop as always; this wrapper posts each
/// call to the loop and waits on the caller's thread, so it must never be
/// used on a loop thread. Events are queued until ``nextEvent(_:timeout:)``.
public final class BlockingSignallingClient: SignallingClientHandler, @unchecked Sendable {
    public let loop: EventLoop
    /// The loop-native client underneath. Loop only: reach it through ``onLoop(_:)``.
    private var client: SignallingClient!

    private final class Answer: @unchecked Sendable {
        var result: Result<JSONValue, SignallingClientError>?
    }

    private let lock = NSCondition()
    // Guarded by lock.
    private var connected = false
    private var closed = false
    private var closeCode: UInt16?
    private var failure: String?
    private var inbox: [JSONValue] = []

    private init(loop: EventLoop) { self.loop = loop }

    /// Connects, completes the WebSocket handshake, and returns the client.
    /// - Parameters:
    ///   - host: the Host header (and what a TLS layer verifies, if it does).
    ///   - tls: a client TLS context for wss://, nil for ws://.
    public static func connect(loop: EventLoop, address: SocketAddress, host: String, path: String = "/ws",
                               tls: TLSContext? = nil, timeout: Double = 10) throws -> BlockingSignallingClient {
        let b = BlockingSignallingClient(loop: loop)
        try loop.submit {
            b.client = try SignallingClient.connect(to: address, host: host, path: path, tls: tls, on: loop,
                                                    handshakeTimeout: .seconds(timeout), handler: b)
        }
        try b.wait(until: Date().addingTimeInterval(timeout + 5), what: "WebSocket handshake") { $0.connected || $0.closed }
        if let why = b.lock.withLock({ b.connected ? nil : b.failure ?? "closed" }) {
            // Closed before the upgrade: say why (refused, TLS, a pin mismatch) in one line.
            throw SignallingClientError.failed("\(address): \(why)")
        }
        return b
    }

    /// Runs `body` with the loop-native client on its loop and waits for it.
    @discardableResult
    public func onLoop<T>(_ body: @escaping @Sendable (SignallingClient) throws -> T) throws -> T {
        try loop.submit { [self] in try body(client) }
    }

    /// True once the connection has closed (either side).
    public var isClosed: Bool { lock.withLock { closed } }

    /// Sends a request and waits for its answer: the reply, or the `error`
    /// the server answered with. Events that arrive meanwhile stay queued.
    /// Throws when there was no answer (timeout, connection closed).
    @discardableResult
    public func request(_ r: ClientRequest, timeout: Double = 10) throws -> JSONValue {
        switch try answer(r, timeout: timeout) {
        case .success(let reply): return reply
        case .failure(.refused(_, let error)): return error.json
        case .failure(let error): throw error
        }
    }

    /// Like ``request(_:timeout:)``, but an `error` answer throws too.
    @discardableResult
    public func call(_ r: ClientRequest, timeout: Double = 10) throws -> JSONValue {
        try answer(r, timeout: timeout).get()
    }

    private func answer(_ r: ClientRequest, timeout: Double) throws -> Result<JSONValue, SignallingClientError> {
        let answer = Answer()
        let posted = loop.execute { [self] in
            client.request(r, timeout: .milliseconds(Int64(timeout * 1000))) { result in
                self.update { _ in answer.result = result }
            }
        }
        guard posted else { throw SignallingClientError.closed(code: nil, reason: "the event loop has stopped") }
        // The client's timer answers at the timeout; the margin only guards against a stalled loop.
        try wait(until: Date().addingTimeInterval(timeout + 5), what: "reply to \(r.type)") { _ in answer.result != nil }
        return lock.withLock { answer.result! }
    }

    /// Sends raw text (for tests of malformed input).
    public func send(_ text: String) {
        loop.execute { [self] in client.send(text: text) }
    }

    /// Sends one frame as is (masked, as a client must).
    public func send(frame: WebSocketFrame) {
        loop.execute { [self] in client.send(frame: frame) }
    }

    /// The next server event of `type` (or any type when nil), removing it from the queue.
    public func nextEvent(_ type: String? = nil, timeout: Double = 10) throws -> JSONValue {
        var event: JSONValue?
        try wait(until: Date().addingTimeInterval(timeout), what: "event \(type ?? "any")", failOnClose: true) { c in
            if let i = c.inbox.firstIndex(where: { ($0["id"] ?? .null) == .null && (type == nil || $0["type"]?.stringValue == type) }) {
                event = c.inbox.remove(at: i)
                return true
            }
            return false
        }
        return event!
    }

    /// Takes every queued message: events, and answers to what was sent raw.
    public func takeQueued() -> [JSONValue] {
        lock.withLock {
            defer { inbox.removeAll() }
            return inbox
        }
    }

    /// Waits until the server closes the connection; returns its close code (nil if none was sent).
    public func waitForClose(timeout: Double = 10) throws -> UInt16? {
        try wait(until: Date().addingTimeInterval(timeout), what: "close") { $0.closed }
        return lock.withLock { closeCode }
    }

    /// Closes the connection (without waiting for the server's close frame),
    /// or aborts it (no close frame: a dropped connection).
    public func close(abort: Bool = false) {
        try? onLoop { abort ? $0.abort() : $0.close() }
        _ = try? waitForClose(timeout: 5)
    }

    private func wait(until deadline: Date, what: String, failOnClose: Bool = false,
                      _ done: (BlockingSignallingClient) -> Bool) throws {
        lock.lock()
        defer { lock.unlock() }
        while !done(self) {
            if closed && failOnClose { throw SignallingClientError.closed(code: closeCode, reason: failure) }
            if !lock.wait(until: deadline) { throw SignallingClientError.timedOut(what) }
        }
    }

    private func update(_ body: (BlockingSignallingClient) -> Void) {
        lock.withLock { body(self) }
        lock.broadcast()
    }

    // MARK: SignallingClientHandler (on the loop)

    public func signallingClientDidConnect(_ client: SignallingClient) {
        update { $0.connected = true }
    }

    public func signallingClient(_ client: SignallingClient, received event: JSONValue) {
        update { $0.inbox.append(event) }
    }

    public func signallingClient(_ client: SignallingClient, didCloseWith code: UInt16?, reason: String?) {
        update { c in
            c.closed = true
            c.closeCode = code
            c.failure = reason
        }
    }
}
