/// A client's incremental HTTP/1.1 response reader (RFC 9112 §6.3): the
/// head, then the body as its framing says (Content-Length, chunked, or
/// until the server closes), so that a keep-alive connection can carry the
/// next request. The body is read past and dropped: the client that uses
/// it (the chat webhook) needs the status only. Memory is bounded by the
/// head (`HTTPResponseHead.maxHeadLength`) and one chunk-size or trailer
/// line; a body that never ends is the caller's timeout to bound.
///
/// Feed bytes with `append(_:)`, then call `next()` until `.needMoreData`.
/// One reader per connection, on the connection's loop.
public struct HTTPResponseReader: Sendable {
    public enum Event: Sendable, Equatable {
        /// The buffered bytes hold no complete response; append more.
        case needMoreData
        /// A final (non-1xx) response. With `reusable` its body has been
        /// read through and the connection may carry another request; when
        /// false, the server closes after it (its `Connection: close`, an
        /// HTTP/1.0 server, or a body that only the close ends): close it.
        case response(status: Int, reusable: Bool)
    }

    private enum State: Sendable {
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataCRLF
        case trailers
    }

    private var state = State.head
    private var buffer: [UInt8] = []
    private var status = 0
    private var keepAlive = false
    private var trailerBytes = 0
    /// Buffered bytes already looked through for the end of the head or
    /// line being read (each byte once, however slowly they trickle in).
    private var scanned = 0

    public init() {}

    /// Bytes buffered past the last complete response (a server sending
    /// more than it was asked for).
    public var bufferedByteCount: Int { buffer.count }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// Parses as far as the buffered bytes allow. Throws on a malformed or
    /// oversized head, chunk line or trailer block, on a status below 100,
    /// and on `101` (a POST cannot switch protocols): close the connection then.
    public mutating func next() throws(HTTPParseError) -> Event {
        while true {
            switch state {
            case .head:
                guard headEnded() else {
                    if buffer.count > HTTPResponseHead.maxHeadLength { throw .headerFieldsTooLarge }
                    return .needMoreData
                }
                scanned = 0
                guard let (head, consumed) = try HTTPResponseHead.parse(buffer) else { return .needMoreData }
                buffer.removeFirst(consumed)
                let code = head.status.code
                if code < 100 { throw .badRequest("status code \(code) out of range") }   // not an interim response to wait past
                if code == 101 { throw .badRequest("unexpected 101 Switching Protocols") }
                if code < 200 { continue }   // 100, 103: the final response follows
                status = code
                let h = head.headers
                keepAlive = head.version == .http1_1
                    ? !h.containsToken("close", in: "Connection")
                    : h.containsToken("keep-alive", in: "Connection") && !h.containsToken("close", in: "Connection")
                if code == 204 || code == 304 { return finish() }
                let codings = h.values("Transfer-Encoding").flatMap { $0.split(separator: ",") }.map { $0.trimmingOWS() }
                if let last = codings.last {
                    // chunked last frames the body; any other coding last: the close does (§6.3 item 4).
                    guard asciiCaseInsensitiveEqual(last, "chunked") else { return done(reusable: false) }
                    state = .chunkSize
                } else if let n = try h.contentLength() {
                    state = .fixedBody(remaining: n)
                } else {
                    return done(reusable: false)   // no framing: the body runs to the close
                }

            case .fixedBody(let remaining):
                let n = min(remaining, buffer.count)
                buffer.removeFirst(n)
                if remaining == n { return finish() }
                state = .fixedBody(remaining: remaining - n)
                return .needMoreData

            case .chunkSize:
                guard let line = try nextLine(limit: HTTPRequestParser.maxChunkLineLength, "chunk size line too long") else {
                    return .needMoreData
                }
                let size = try HTTPRequestParser.chunkSize(line[...])
                state = size == 0 ? .trailers : .chunkData(remaining: size)

            case .chunkData(let remaining):
                let n = min(remaining, buffer.count)
                buffer.removeFirst(n)
                if remaining > n {
                    state = .chunkData(remaining: remaining - n)
                    return .needMoreData
                }
                state = .chunkDataCRLF

            case .chunkDataCRLF:
                guard let line = try nextLine(limit: 2, "chunk data not followed by CRLF") else { return .needMoreData }
                guard line.isEmpty else { throw .badRequest("chunk data not followed by CRLF") }
                state = .chunkSize

            case .trailers:
                // Trailer fields are dropped, within the head's budget.
                guard let line = try nextLine(limit: HTTPResponseHead.maxHeadLength - trailerBytes, "trailers too large") else {
                    return .needMoreData
                }
                trailerBytes += line.count + 2
                if line.isEmpty { return finish() }
            }
        }
    }

    private mutating func finish() -> Event { done(reusable: keepAlive) }

    private mutating func done(reusable: Bool) -> Event {
        state = .head
        trailerBytes = 0
        return .response(status: status, reusable: reusable)
    }

    /// Whether the buffered head holds its end (an empty line after the
    /// first: LF LF or LF CR LF) within `maxHeadLength`; only then is it
    /// parsed, so a head that trickles in costs one pass, not one per read.
    private mutating func headEnded() -> Bool {
        let end = min(buffer.count, HTTPResponseHead.maxHeadLength + 1)
        defer { scanned = end }
        for i in scanned..<end where buffer[i] == 0x0A {
            if i >= 1 && buffer[i - 1] == 0x0A || i >= 2 && buffer[i - 1] == 0x0D && buffer[i - 2] == 0x0A { return true }
        }
        return false
    }

    /// The next line (without CR LF), consumed; nil while incomplete; throws
    /// once `limit` bytes hold no line end.
    private mutating func nextLine(limit: Int, _ tooLong: String) throws(HTTPParseError) -> [UInt8]? {
        let searched = min(buffer.count, max(limit, 0) + 1)
        guard let lf = buffer[min(scanned, searched)..<searched].firstIndex(of: 0x0A) else {
            scanned = searched
            if buffer.count > limit { throw .badRequest(tooLong) }
            return nil
        }
        scanned = 0
        let end = lf > 0 && buffer[lf - 1] == 0x0D ? lf - 1 : lf
        let line = Array(buffer[..<end])
        buffer.removeFirst(lf + 1)
        return line
    }
}
