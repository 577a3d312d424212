import Foundation
import Synchronization
import ParleyCore
import ParleyHTTP
import ParleyIO

/// A request as a route handler sees it.
public struct HTTPServerRequest: Sendable {
    public var head: HTTPRequestHead
    public var method: String { head.method }
    /// Percent-decoded path, e.g. `/admin/rooms/standup/participants/alice`.
    public var path: String
    /// Decoded query parameters, in order.
    public var query: [(name: String, value: String)]
    public var body: [UInt8]
    public var remoteAddress: SocketAddress
    /// The connection's loop: handlers are called on it, and work a handler
    /// hands to a ``BlockingPool`` comes back to it.
    public var loop: EventLoop
    /// The part of `path` after the route's prefix (empty for exact routes).
    public var pathRemainder: String = ""

    public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }

    /// The token in `Authorization: Bearer <token>`, or nil.
    public var bearerToken: String? {
        guard let h = head.headers["Authorization"] else { return nil }
        let parts = h.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }
}

/// What a response carries after its head.
public enum HTTPResponseBody: Sendable {
    case bytes([UInt8])
    /// `length` bytes of the file at `path` from `offset`, streamed in chunks
    /// with backpressure (the file is opened when the response is written;
    /// if it cannot be, the client gets a 404 instead).
    case file(path: String, offset: Int, length: Int)
}

/// A response from a route handler.
public struct HTTPServerResponse: Sendable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: HTTPResponseBody

    public init(status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: HTTPResponseBody = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: HTTPStatus = .ok, _ value: JSONValue) -> HTTPServerResponse {
        var h = HTTPHeaders()
        h.add("Content-Type", "application/json")
        return HTTPServerResponse(status: status, headers: h, body: .bytes(Array((value.serialized + "\n").utf8)))
    }

    public static func text(_ status: HTTPStatus, _ text: String, contentType: String = "text/plain; charset=utf-8") -> HTTPServerResponse {
        var h = HTTPHeaders()
        h.add("Content-Type", contentType)
        return HTTPServerResponse(status: status, headers: h, body: .bytes(Array(text.utf8)))
    }

    /// `{"error": message}` with `status`.
    public static func error(_ status: HTTPStatus, _ message: String) -> HTTPServerResponse {
        json(status, ["error": .string(message)])
    }

    /// 503 with `Retry-After: 1`: the ``BlockingPool`` has no room for the request's work.
    public static var busy: HTTPServerResponse {
        var r = error(.serviceUnavailable, "the server is busy; try again")
        r.headers.add("Retry-After", "1")
        return r
    }
}

/// Completes one request. `respond` may be called from any thread, exactly
/// once; the response is written on the connection's loop. If the handler
/// drops the responder without responding, the client gets a 500.
public final class HTTPResponder: Sendable {
    private let deliver: Mutex<(@Sendable (HTTPServerResponse) -> Void)?>

    init(_ deliver: @escaping @Sendable (HTTPServerResponse) -> Void) { self.deliver = Mutex(deliver) }

    public func respond(_ response: HTTPServerResponse) {
        let d = deliver.withLock { d -> (@Sendable (HTTPServerResponse) -> Void)? in
            let x = d
            d = nil
            return x
        }
        d?(response)
    }

    deinit {
        if let d = deliver.withLock({ $0 }) { d(.error(.internalServerError, "the handler did not respond")) }
    }
}

/// Handles a request; answers through the responder (now or later, from any thread).
public typealias HTTPHandler = @Sendable (HTTPServerRequest, HTTPResponder) -> Void

/// Takes a request body as it arrives, for a route added with
/// ``HTTPRouter/addStreaming(_:_:_:)``: the body goes to disk (or anywhere)
/// instead of being collected in memory. Called on the connection's loop.
public protocol HTTPBodySink: AnyObject {
    /// The next body bytes, in order. Throwing ends the request: `abort` is
    /// called, the client gets the response of an `HTTPRefusal` (any other
    /// error: a 500) and the connection is closed.
    func write(_ bytes: [UInt8]) throws
    /// The whole body arrived: answer through `responder` (now or later, any thread).
    func finish(_ responder: HTTPResponder)
    /// The body will not complete (connection lost, over the limit, malformed).
    func abort()
}

/// What a streaming route decides from the request head, before any body byte is read.
public enum HTTPBodyDecision {
    /// Read a body of at most `maxBytes` (413 past it) into `sink`.
    case stream(maxBytes: Int, sink: any HTTPBodySink)
    /// Answer now without reading the body (the connection closes after it).
    case respond(HTTPServerResponse)
}

/// Accepts WebSocket connections on a path (see `HTTPServer`). Called on the
/// connection's loop.
public protocol WebSocketService: AnyObject, Sendable {
    /// The handshake succeeded; `ws` is open.
    func webSocketOpened(_ ws: WebSocketConnection, request: HTTPServerRequest)
    /// A complete text message.
    func webSocket(_ ws: WebSocketConnection, received text: String)
    /// The connection is gone; called once.
    func webSocketClosed(_ ws: WebSocketConnection)
}

/// The route table: method + exact path or path prefix → handler, and
/// WebSocket paths. Routes may be added at any time (thread-safe); the
/// longest matching prefix wins, exact matches before prefixes.
public final class HTTPRouter: Sendable {
    public enum PathMatch: Sendable, Equatable {
        case exact(String)
        /// Matches the prefix itself and anything below it (`/hls/` matches `/hls/a/b.m3u8`).
        case prefix(String)
    }

    enum Handler: Sendable {
        /// Gets the whole body (up to the parser's `maxBodySize`).
        case whole(HTTPHandler)
        /// Decides on the head; the body is streamed (see `HTTPBodySink`).
        case streaming(@Sendable (HTTPServerRequest) -> HTTPBodyDecision)
    }

    struct Route: Sendable {
        var method: String?
        var match: PathMatch
        var handler: Handler
    }

    private let state = Mutex<(routes: [Route], sockets: [String: any WebSocketService])>(([], [:]))

    public init() {}

    /// Registers `handler` for `method` (nil: any method) on `match`.
    public func add(_ method: String?, _ match: PathMatch, _ handler: @escaping HTTPHandler) {
        state.withLock { $0.routes.append(Route(method: method, match: match, handler: .whole(handler))) }
    }

    /// Registers a route whose body is streamed rather than collected:
    /// `decide` sees the request head (body empty) and either answers at once
    /// or names the sink and the body limit for this request.
    public func addStreaming(_ method: String, _ match: PathMatch,
                             _ decide: @escaping @Sendable (HTTPServerRequest) -> HTTPBodyDecision) {
        state.withLock { $0.routes.append(Route(method: method, match: match, handler: .streaming(decide))) }
    }

    /// Registers a handler that answers at once.
    public func add(_ method: String?, _ match: PathMatch, sync handler: @escaping @Sendable (HTTPServerRequest) -> HTTPServerResponse) {
        add(method, match) { req, responder in responder.respond(handler(req)) }
    }

    /// Registers a handler that blocks (SQLite, the disk): it runs on a thread
    /// of `pool`, never on the connection's loop, and its answer is written
    /// from the loop. It may throw an `HTTPRefusal` (its response is sent) or
    /// any other error (a 500 naming it). With the pool's queue full the
    /// client gets ``HTTPServerResponse/busy`` at once.
    public func add(_ method: String?, _ match: PathMatch, blocking pool: BlockingPool,
                    _ handler: @escaping @Sendable (HTTPServerRequest) throws -> HTTPServerResponse) {
        let answer = HTTPServerResponse.answering(handler)
        add(method, match) { req, responder in
            do {
                try pool.run(on: req.loop, { answer(req) }, then: { result in
                    responder.respond((try? result.get()) ?? .error(.internalServerError, "the handler failed"))
                })
            } catch {
                responder.respond(.busy)
            }
        }
    }

    /// Serves WebSocket upgrades on `path` with `service`.
    public func addWebSocket(_ path: String, _ service: any WebSocketService) {
        state.withLock { $0.sockets[path] = service }
    }

    func webSocketService(for path: String) -> (any WebSocketService)? {
        state.withLock { $0.sockets[path] }
    }

    enum Resolution {
        case handler(Handler, remainder: String)
        case notFound
        case methodNotAllowed(allow: [String])
    }

    func resolve(method: String, path: String) -> Resolution {
        let routes = state.withLock { $0.routes }
        var best: (route: Route, score: Int, remainder: String)?
        var allowed: Set<String> = []
        var pathMatched = false
        for r in routes {
            let score: Int
            var remainder = ""
            switch r.match {
            case .exact(let p):
                guard p == path else { continue }
                score = Int.max
            case .prefix(let p):
                guard path.hasPrefix(p) else { continue }
                score = p.count
                remainder = String(path.dropFirst(p.count))
            }
            pathMatched = true
            let methodOK = r.method == nil || r.method == method || (method == "HEAD" && r.method == "GET")
            if !methodOK {
                if let m = r.method { allowed.insert(m) }
                continue
            }
            if best == nil || score > best!.score { best = (r, score, remainder) }
        }
        if let best { return .handler(best.route.handler, remainder: best.remainder) }
        if pathMatched { return .methodNotAllowed(allow: allowed.sorted()) }
        return .notFound
    }
}
