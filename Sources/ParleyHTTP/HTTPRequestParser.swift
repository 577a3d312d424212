import ParleyCore

/// An incremental HTTP/1.1 request parser (RFC 9112). Feed it bytes as they
/// arrive with `append(_:)`, then call `next()` until it says `.needMoreData`.
///
/// Limits are enforced while parsing, before the offending bytes are
/// buffered in full: an over-long request line is a 414, an over-large or
/// over-numerous header block a 431, an over-large body a 413, a transfer
/// coding other than `chunked` a 501, anything malformed a 400. After an
/// error the parser stays failed: send `error.status` and close.
///
/// Requests may be pipelined: after `.end` the parser starts on the next
/// request if the connection is keep-alive; otherwise it stops consuming.
///
/// Not thread-safe; one parser per connection, used by the connection's loop.
public struct HTTPRequestParser: Sendable {
    public struct Limits: Sendable {
        /// Longest request line (method, target, version, CRLF), in bytes.
        public var maxRequestLineLength: Int = 8192
        /// Largest header block (all field lines and the final CRLF), in bytes.
        public var maxHeaderBytes: Int = 16384
        /// Most header fields.
        public var maxHeaderCount: Int = 100
        /// Largest body, in bytes (Content-Length or the sum of chunks).
        public var maxBodySize: Int = 1 << 20

        public init(maxRequestLineLength: Int = 8192, maxHeaderBytes: Int = 16384,
                    maxHeaderCount: Int = 100, maxBodySize: Int = 1 << 20) {
            self.maxRequestLineLength = maxRequestLineLength
            self.maxHeaderBytes = maxHeaderBytes
            self.maxHeaderCount = maxHeaderCount
            self.maxBodySize = maxBodySize
        }
    }

    /// What `next()` found.
    public enum Event: Sendable {
        /// The buffered bytes hold no further event; append more.
        case needMoreData
        /// The request line and headers are complete.
        case head(HTTPRequestHead)
        /// Some body bytes (already de-chunked), in order.
        case body([UInt8])
        /// The request (and its body) is complete.
        case end
    }

    private enum State: Sendable {
        case requestLine
        case headerLines
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataCRLF
        case trailers
        case endOfMessage
        /// Connection is not keep-alive and the request is complete.
        case closed
        case failed(HTTPParseError)
    }

    /// Longest chunk-size line we accept (size + extensions).
    static let maxChunkLineLength = 1024
    /// Empty lines tolerated before a request line (RFC 9112 §2.2).
    static let maxLeadingEmptyLines = 4

    public let limits: Limits
    private var state: State = .requestLine
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// Where the search for the next LF resumes (avoids rescanning partial lines).
    private var scanIndex = 0

    // The request being parsed.
    private var method = ""
    private var target = ""
    private var version = HTTPVersion.http1_1
    private var headers = HTTPHeaders()
    private var headerBytes = 0
    private var leadingEmptyLines = 0
    private var bodyReceived = 0
    /// This request's body limit: `limits.maxBodySize` unless `allowBody(upTo:)` changed it.
    private var bodyLimit: Int
    /// Content-Length of the request being parsed (0 when chunked or absent).
    private var declaredLength = 0
    private var keepAlive = true

    // For nextRequest().
    private var pendingHead: HTTPRequestHead?
    private var pendingBody: [UInt8] = []

    public init(limits: Limits = Limits()) {
        self.limits = limits
        self.bodyLimit = limits.maxBodySize
    }

    /// Sets the body limit of the request whose `.head` was just returned, in
    /// place of `limits.maxBodySize`: for a route that streams its body to
    /// disk rather than memory (uploads). Checked before any body byte is
    /// returned (Content-Length) or as chunks arrive (chunked); the next
    /// request starts again at `limits.maxBodySize`.
    public mutating func allowBody(upTo bytes: Int) {
        bodyLimit = bytes
    }

    /// Bytes buffered but not yet consumed.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// True when the last request was not keep-alive and is complete: close the connection.
    public var isClosed: Bool { if case .closed = state { return true } else { return false } }

    /// Removes and returns the bytes buffered past the last event. After a
    /// `101 Switching Protocols` (WebSocket upgrade) these belong to the new
    /// protocol: hand them to the WebSocket decoder before newly read bytes.
    public mutating func takeBufferedBytes() -> [UInt8] {
        let rest = Array(buffer[readIndex...])
        buffer.removeAll(keepingCapacity: true)
        readIndex = 0
        scanIndex = 0
        return rest
    }

    /// Appends received bytes.
    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if case .closed = state { return }
        if readIndex > 0 && readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            scanIndex = 0
            readIndex = 0
        } else if readIndex >= 4096 && readIndex * 2 >= buffer.count {
            buffer.removeSubrange(0..<readIndex)
            scanIndex -= readIndex
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Parses as far as the buffered bytes allow and returns the next event.
    public mutating func next() throws(HTTPParseError) -> Event {
        do {
            return try step()
        } catch {
            state = .failed(error)
            throw error
        }
    }

    /// Convenience over `next()`: returns a whole request once its body is
    /// complete, nil while more bytes are needed.
    public mutating func nextRequest() throws(HTTPParseError) -> HTTPRequest? {
        while true {
            switch try next() {
            case .needMoreData:
                return nil
            case .head(let head):
                pendingHead = head
                pendingBody = []
            case .body(let bytes):
                pendingBody.append(contentsOf: bytes)
            case .end:
                guard let head = pendingHead else { return nil }
                pendingHead = nil
                let body = pendingBody
                pendingBody = []
                return HTTPRequest(head: head, body: body)
            }
        }
    }

    // MARK: - State machine

    private mutating func step() throws(HTTPParseError) -> Event {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .closed:
                return .needMoreData

            case .requestLine:
                guard let line = nextLine(limit: limits.maxRequestLineLength) else {
                    if bufferedByteCount > limits.maxRequestLineLength { throw .uriTooLong }
                    return .needMoreData
                }
                if line.isEmpty {
                    leadingEmptyLines += 1
                    if leadingEmptyLines > Self.maxLeadingEmptyLines { throw .badRequest("empty lines before request") }
                    continue
                }
                try parseRequestLine(line)
                state = .headerLines

            case .headerLines:
                guard let line = try nextFieldLine() else { return .needMoreData }
                if line.isEmpty {
                    return .head(try finishHead())
                }
                if headers.count >= limits.maxHeaderCount { throw .headerFieldsTooLarge }
                try parseHeaderLine(line)

            case .fixedBody(let remaining):
                // Checked here, not when the head is read, so the caller can
                // raise the limit for this request between `.head` and the body.
                if declaredLength > bodyLimit { throw .payloadTooLarge }
                if remaining == 0 {
                    state = .endOfMessage
                    continue
                }
                let n = min(remaining, bufferedByteCount)
                if n == 0 { return .needMoreData }
                let chunk = Array(buffer[readIndex..<readIndex + n])
                consume(n)
                state = .fixedBody(remaining: remaining - n)
                return .body(chunk)

            case .chunkSize:
                guard let line = nextLine(limit: Self.maxChunkLineLength) else {
                    if bufferedByteCount > Self.maxChunkLineLength { throw .badRequest("chunk size line too long") }
                    return .needMoreData
                }
                let size = try Self.chunkSize(line)
                if size > bodyLimit - bodyReceived { throw .payloadTooLarge }
                state = size == 0 ? .trailers : .chunkData(remaining: size)

            case .chunkData(let remaining):
                let n = min(remaining, bufferedByteCount)
                if n == 0 { return .needMoreData }
                let chunk = Array(buffer[readIndex..<readIndex + n])
                consume(n)
                bodyReceived += n
                state = remaining - n == 0 ? .chunkDataCRLF : .chunkData(remaining: remaining - n)
                return .body(chunk)

            case .chunkDataCRLF:
                guard let line = nextLine(limit: 2) else {
                    if bufferedByteCount >= 2 { throw .badRequest("chunk data not followed by CRLF") }
                    return .needMoreData
                }
                guard line.isEmpty else { throw .badRequest("chunk data not followed by CRLF") }
                state = .chunkSize

            case .trailers:
                // Trailer fields are read against the header budget and dropped.
                guard let line = try nextFieldLine() else { return .needMoreData }
                if line.isEmpty {
                    state = .endOfMessage
                } else {
                    try validateFieldLine(line)
                }

            case .endOfMessage:
                resetForNextRequest()
                return .end
            }
        }
    }

    private mutating func resetForNextRequest() {
        state = keepAlive ? .requestLine : .closed
        method = ""
        target = ""
        headers = HTTPHeaders()
        headerBytes = 0
        leadingEmptyLines = 0
        bodyReceived = 0
        bodyLimit = limits.maxBodySize
        declaredLength = 0
        if case .closed = state {
            buffer.removeAll()
            readIndex = 0
            scanIndex = 0
        }
    }

    @inline(__always)
    private mutating func consume(_ n: Int) {
        readIndex += n
        if scanIndex < readIndex { scanIndex = readIndex }
    }

    /// The next header or trailer line, charged to the header byte budget
    /// (431 once the block outgrows `maxHeaderBytes`); nil when incomplete.
    private mutating func nextFieldLine() throws(HTTPParseError) -> ArraySlice<UInt8>? {
        let room = limits.maxHeaderBytes - headerBytes
        let start = readIndex
        guard let line = nextLine(limit: room) else {
            if bufferedByteCount > room { throw .headerFieldsTooLarge }
            return nil
        }
        headerBytes += readIndex - start
        return line
    }

    /// The next line (without CRLF or LF) if one is complete within `limit`
    /// bytes (terminator included); consumes it. A bare CR inside a line is
    /// left in place and rejected by the field validators.
    private mutating func nextLine(limit: Int) -> ArraySlice<UInt8>? {
        let end = min(buffer.count, readIndex + max(limit, 0) + 1)
        var i = max(scanIndex, readIndex)
        while i < end {
            if buffer[i] == UInt8(ascii: "\n") {
                var lineEnd = i
                if lineEnd > readIndex && buffer[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
                if i + 1 - readIndex > limit { return nil }
                let line = buffer[readIndex..<lineEnd]
                readIndex = i + 1
                scanIndex = readIndex
                return line
            }
            i += 1
        }
        scanIndex = i
        return nil
    }

    // MARK: - Request line (RFC 9112 §3)

    private mutating func parseRequestLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) {
        guard let sp1 = line.firstIndex(of: UInt8(ascii: " ")) else { throw .badRequest("malformed request line") }
        let methodBytes = line[line.startIndex..<sp1]
        let rest = line[(sp1 + 1)...]
        guard let sp2 = rest.firstIndex(of: UInt8(ascii: " ")) else { throw .badRequest("malformed request line") }
        let targetBytes = rest[rest.startIndex..<sp2]
        let versionBytes = rest[(sp2 + 1)...]

        guard !methodBytes.isEmpty, methodBytes.allSatisfy(isTokenChar) else { throw .badRequest("invalid method") }
        guard !targetBytes.isEmpty, targetBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .badRequest("invalid request target")
        }
        version = try parseVersion(versionBytes)
        method = String(decoding: methodBytes, as: UTF8.self)
        target = String(decoding: targetBytes, as: UTF8.self)
    }

    private func parseVersion(_ v: ArraySlice<UInt8>) throws(HTTPParseError) -> HTTPVersion {
        // HTTP-version = "HTTP/" DIGIT "." DIGIT
        let b = Array(v)
        guard b.count == 8, b[0] == 0x48, b[1] == 0x54, b[2] == 0x54, b[3] == 0x50, b[4] == 0x2F,
              b[6] == 0x2E, (0x30...0x39).contains(b[5]), (0x30...0x39).contains(b[7]) else {
            throw .badRequest("invalid HTTP version")
        }
        switch (b[5] - 0x30, b[7] - 0x30) {
        case (1, 0): return .http1_0
        case (1, _): return .http1_1   // a higher 1.x minor is handled as 1.1 (RFC 9110 §2.5)
        case (0, _): throw .badRequest("invalid HTTP version")
        default: throw .versionNotSupported
        }
    }

    // MARK: - Header fields (RFC 9112 §5)

    private func validateFieldLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) {
        guard let first = line.first else { return }
        if first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
            throw .badRequest("obsolete line folding")   // RFC 9112 §5.2: reject
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw .badRequest("header without colon") }
        let name = line[line.startIndex..<colon]
        guard !name.isEmpty, name.allSatisfy(isTokenChar) else { throw .badRequest("invalid header name") }
        for b in line[(colon + 1)...] where (b < 0x20 && b != 0x09) || b == 0x7F {
            throw .badRequest("control character in header value")
        }
    }

    private mutating func parseHeaderLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) {
        try validateFieldLine(line)
        let colon = line.firstIndex(of: UInt8(ascii: ":"))!
        let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self)
        var valueStart = colon + 1
        var valueEnd = line.endIndex
        while valueStart < valueEnd, line[valueStart] == 0x20 || line[valueStart] == 0x09 { valueStart += 1 }
        while valueEnd > valueStart, line[valueEnd - 1] == 0x20 || line[valueEnd - 1] == 0x09 { valueEnd -= 1 }
        headers.add(name, String(decoding: line[valueStart..<valueEnd], as: UTF8.self))
    }

    /// Decides body framing and connection persistence (RFC 9112 §6.3, §9.3).
    private mutating func finishHead() throws(HTTPParseError) -> HTTPRequestHead {
        let hosts = headers.values("Host")
        if version == .http1_1 && hosts.count != 1 { throw .badRequest("HTTP/1.1 request needs exactly one Host") }
        if hosts.count > 1 { throw .badRequest("multiple Host fields") }

        switch version {
        case .http1_1: keepAlive = !headers.containsToken("close", in: "Connection")
        case .http1_0: keepAlive = headers.containsToken("keep-alive", in: "Connection")
                                   && !headers.containsToken("close", in: "Connection")
        }

        let transferEncodings = headers.values("Transfer-Encoding")
        let contentLengths = headers.values("Content-Length")
        var bodyLength = HTTPRequestHead.BodyLength.none

        if !transferEncodings.isEmpty {
            // Both framings at once is the request-smuggling shape: refuse it.
            if !contentLengths.isEmpty { throw .badRequest("both Transfer-Encoding and Content-Length") }
            if version == .http1_0 { throw .badRequest("Transfer-Encoding in HTTP/1.0 request") }
            let codings = transferEncodings.flatMap { $0.split(separator: ",") }.map { $0.trimmingOWS() }
            guard let last = codings.last, asciiCaseInsensitiveEqual(last, "chunked") else {
                if codings.contains(where: { asciiCaseInsensitiveEqual($0, "chunked") }) {
                    throw .badRequest("chunked is not the final transfer coding")
                }
                throw .notImplemented("transfer coding \(transferEncodings.joined(separator: ", "))")
            }
            if codings.count > 1 { throw .notImplemented("transfer coding \(transferEncodings.joined(separator: ", "))") }
            bodyLength = .chunked
            state = .chunkSize
        } else if !contentLengths.isEmpty {
            let n = try headers.contentLength()!
            declaredLength = n
            bodyLength = n == 0 ? .none : .contentLength(n)
            state = .fixedBody(remaining: n)
        } else {
            state = .fixedBody(remaining: 0)
        }

        return HTTPRequestHead(method: method, target: target, version: version, headers: headers,
                               keepAlive: keepAlive, bodyLength: bodyLength)
    }

    // MARK: - Chunked coding (RFC 9112 §7.1)

    /// The size on a chunk-size line (hex, optional extensions after `;`); requests and responses alike.
    static func chunkSize(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> Int {
        var size = 0
        var digits = 0
        var i = line.startIndex
        while i < line.endIndex, let d = Hex.digit(line[i]) {
            digits += 1
            // 15 hex digits already exceed any body limit we support.
            if digits > 15 { throw .payloadTooLarge }
            size = size << 4 | Int(d)
            i += 1
        }
        guard digits > 0 else { throw .badRequest("invalid chunk size") }
        // Whatever follows must be (BWS) chunk extensions: ";" ...
        while i < line.endIndex, line[i] == 0x20 || line[i] == 0x09 { i += 1 }
        if i < line.endIndex {
            guard line[i] == UInt8(ascii: ";") else { throw .badRequest("invalid chunk size") }
            for b in line[i...] where (b < 0x20 && b != 0x09) || b == 0x7F {
                throw .badRequest("control character in chunk extension")
            }
        }
        return size
    }
}

extension HTTPHeaders {
    /// The message's Content-Length (RFC 9112 §6.3): nil without one;
    /// repeated or comma-listed values must agree. Requests and responses alike.
    func contentLength() throws(HTTPParseError) -> Int? {
        var length: Int?
        for element in values("Content-Length").flatMap({ $0.split(separator: ",", omittingEmptySubsequences: false) }) {
            let digits = element.trimmingOWS()
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw .badRequest("invalid Content-Length")
            }
            // More than 18 digits cannot fit any limit we allow.
            guard digits.utf8.count <= 18, let n = Int(digits) else { throw .payloadTooLarge }
            if let l = length, l != n { throw .badRequest("conflicting Content-Length values") }
            length = n
        }
        return length
    }
}
