import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO

/// A blocking signalling client over ws:// or wss:// for tools and tests
/// (`parley sdp`, end-to-end tests). The connection lives on an event loop;
/// the caller's thread waits for replies.
public final class SignallingClient: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    let loop: EventLoop
    let lock = NSCondition()
    // Guarded by lock.
    var inbox: [JSONValue] = []
    var handshakeDone = false
    var closeCode: UInt16?
    var closed = false
    var failure: String?
    // Loop-confined.
    var tcp: TCPConnection?
    var nextID = 0

    private init(loop: EventLoop) { self.loop = loop }

    /// Connects, completes the WebSocket handshake, and returns the client.
    /// - Parameters:
    ///   - host: the Host header (and what a TLS layer verifies, if it does).
    ///   - tls: a client TLS context for wss://, nil for ws://.
    public static func connect(loop: EventLoop, address: SocketAddress, host: String, path: String = "/ws",
                               tls: TLSContext? = nil, timeout: Double = 10) throws -> SignallingClient {
        let client = SignallingClient(loop: loop)
        let (request, expectedAccept) = WebSocketHandshake.clientRequest(host: host, path: path)
        try loop.submit {
            let h = ClientHandler(client: client, expectedAccept: expectedAccept)
            client.tcp = try TCPConnection.connect(to: address, on: loop, tls: tls, handler: h)
            client.tcp?.write(request)
        }
        do { try client.wait(timeout: timeout, what: "WebSocket handshake") { $0.handshakeDone } } catch {
            // Closed before the upgrade: say why (refused, TLS, a pin mismatch) in one line.
            if let why = client.lock.withLock({ client.failure }) { throw Failure("\(address): \(why)") }
            throw error
        }
        return client
    }

    /// True once the connection has closed (either side).
    public var isClosed: Bool { lock.withLock { closed } }

    /// Sends a request and waits for its reply (or error). Events that arrive
    /// meanwhile stay queued for `nextEvent`.
    @discardableResult
    public func request(_ r: ClientRequest, timeout: Double = 10) throws -> JSONValue {
        let id = lock.withLock { () -> Int in nextID += 1; return nextID }
        send(ClientMessage(id: JSONValue(id), request: r).encoded)
        var reply: JSONValue?
        try wait(timeout: timeout, what: "reply to \(r.type)") { c in
            if let i = c.inbox.firstIndex(where: { $0["id"] == JSONValue(id) }) {
                reply = c.inbox.remove(at: i)
                return true
            }
            return false
        }
        return reply!
    }

    /// Like `request`, but throws unless the reply is `"ok": true`.
    @discardableResult
    public func call(_ r: ClientRequest, timeout: Double = 10) throws -> JSONValue {
        let reply = try request(r, timeout: timeout)
        guard reply["ok"] == .bool(true) else {
            throw Failure("\(r.type) failed: \(reply["code"]?.stringValue ?? "?"): \(reply["message"]?.stringValue ?? reply.serialized)")
        }
        return reply
    }

    /// Sends raw text (for tests of malformed input).
    public func send(_ text: String) {
        send(frame: WebSocketFrame(opcode: .text, payload: Array(text.utf8)))
    }

    /// Sends one frame as is (masked, as a client must).
    public func send(frame: WebSocketFrame) {
        let bytes = WebSocketFrameEncoder(role: .client).encode(frame)
        loop.execute { [self] in tcp?.write(bytes) }
    }

    /// The next server event of `type` (or any type when nil), removing it from the queue.
    public func nextEvent(_ type: String? = nil, timeout: Double = 10) throws -> JSONValue {
        var event: JSONValue?
        try wait(timeout: timeout, what: "event \(type ?? "any")") { c in
            if let i = c.inbox.firstIndex(where: { ($0["id"] ?? .null) == .null && (type == nil || $0["type"]?.stringValue == type) }) {
                event = c.inbox.remove(at: i)
                return true
            }
            return false
        }
        return event!
    }

    /// Waits until the server closes the connection; returns its close code (nil if none was sent).
    public func waitForClose(timeout: Double = 10) throws -> UInt16? {
        try wait(timeout: timeout, what: "close", allowClosed: true) { $0.closed }
        return lock.withLock { closeCode }
    }

    /// Closes the connection (without waiting for the server's close frame),
    /// or aborts it (no close frame: a dropped connection).
    public func close(abort: Bool = false) {
        let frame = WebSocketFrameEncoder(role: .client).close(code: .normalClosure)
        try? loop.submit { [self] in
            guard let tcp, tcp.isOpen else { return }
            if abort { tcp.abort() } else { tcp.write(frame); tcp.close() }
        }
        _ = try? waitForClose(timeout: 5)
    }

    private func wait(timeout: Double, what: String, allowClosed: Bool = false, _ done: (SignallingClient) -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while !done(self) {
            if closed && !allowClosed {
                throw Failure("connection closed while waiting for \(what)\(failure.map { ": \($0)" } ?? "")" +
                              (closeCode.map { " (close code \($0))" } ?? ""))
            }
            if !lock.wait(until: deadline) { throw Failure("timed out waiting for \(what)") }
        }
    }

    fileprivate func update(_ body: (SignallingClient) -> Void) {
        lock.withLock { body(self) }
        lock.broadcast()
    }

    final class ClientHandler: TCPConnectionHandler {
        let client: SignallingClient
        let expectedAccept: String
        var head: [UInt8] = []
        var upgraded = false
        var decoder = WebSocketMessageDecoder(role: .client)
        let encoder = WebSocketFrameEncoder(role: .client)

        init(client: SignallingClient, expectedAccept: String) { self.client = client; self.expectedAccept = expectedAccept }

        func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
            var rest = Array(bytes)
            if !upgraded {
                head += rest
                let parsed: (head: HTTPResponseHead, consumed: Int)?
                do { parsed = try HTTPResponseHead.parse(head) } catch {
                    fail(connection, "bad response head: \(error)")
                    return
                }
                guard let (response, consumed) = parsed else { return }
                rest = Array(head[consumed...])
                guard response.status.code == 101 else {
                    fail(connection, "handshake refused: \(response.status.code) \(response.status.reason)")
                    return
                }
                guard WebSocketHandshake.isAccepted(response, expectedAccept: expectedAccept) else {
                    fail(connection, "handshake not accepted (Upgrade, Connection or Sec-WebSocket-Accept)")
                    return
                }
                upgraded = true
                client.update { $0.handshakeDone = true }
            }
            decoder.append(rest)
            while true {
                let m: WebSocketMessage?
                do { m = try decoder.nextMessage() } catch {
                    fail(connection, "\(error)")
                    return
                }
                guard let m else { return }
                switch m {
                case .text(let t):
                    let v = (try? JSONValue.parse(t)) ?? ["type": "unparseable", "text": .string(t)]
                    client.update { $0.inbox.append(v) }
                case .ping(let p): connection.write(encoder.pong(p))
                case .close(let code, _):
                    client.update { $0.closeCode = code?.rawValue }
                    connection.close()
                case .binary, .pong: break
                }
            }
        }

        func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) {
            client.update { c in
                c.closed = true
                if !upgraded, c.failure == nil { c.failure = "\(reason)" }
            }
        }

        func fail(_ c: TCPConnection, _ why: String) {
            client.update { $0.failure = why }
            c.abort()
        }
    }
}
