import ParleyCore

/// Invariants of this module's decoders, checked on arbitrary input by the
/// fuzz harnesses (tools/fuzz/targets/http-request.swift, websocket.swift) and by the
/// XCTest cases that replay their committed corpora. Each check returns nil
/// when every invariant holds, or a description of the first broken one.
enum CodecSelfCheck {
    /// Small limits, so that fuzzed inputs reach every limit path.
    static let fuzzLimits = HTTPRequestParser.Limits(maxRequestLineLength: 256, maxHeaderBytes: 512,
                                                     maxHeaderCount: 8, maxBodySize: 1024)

    /// Splits `input` into chunks whose sizes come from the input itself, so
    /// the fuzzer explores chunk boundaries too.
    static func chunks(_ input: [UInt8]) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var i = 0
        var k = 0
        while i < input.count {
            let n = 1 + Int(input[k % input.count] % 7)
            out.append(input[i..<min(input.count, i + n)])
            i += n
            k += 1
        }
        return out
    }

    // MARK: HTTP

    struct ParsedRequest: Equatable {
        var method: String
        var target: String
        var version: HTTPVersion
        var headers: [String]
        var keepAlive: Bool
        var body: [UInt8]

        init(_ r: HTTPRequest) {
            method = r.head.method
            target = r.head.target
            version = r.head.version
            headers = r.head.headers.fields.map { "\($0.name): \($0.value)" }
            keepAlive = r.head.keepAlive
            body = r.body
        }
    }

    struct HTTPOutcome: Equatable {
        var requests: [ParsedRequest] = []
        var error: HTTPParseError?
        var closed = false
    }

    static func parseHTTP(_ pieces: [ArraySlice<UInt8>], limits: HTTPRequestParser.Limits) -> HTTPOutcome {
        var parser = HTTPRequestParser(limits: limits)
        var outcome = HTTPOutcome()
        do {
            for piece in pieces {
                parser.append(piece)
                while let r = try parser.nextRequest() { outcome.requests.append(ParsedRequest(r)) }
            }
        } catch {
            outcome.error = error
        }
        outcome.closed = parser.isClosed
        return outcome
    }

    /// 1. The outcome does not depend on how the bytes are chunked.
    /// 2. Every parsed request, written back out (framing normalised to
    ///    Content-Length), parses to the same request.
    /// 3. Every error maps to a 4xx/5xx status.
    static func httpRequest(_ input: [UInt8]) -> String? {
        let whole = parseHTTP([input[...]], limits: fuzzLimits)
        let split = parseHTTP(chunks(input), limits: fuzzLimits)
        if whole != split { return "chunking changed the outcome: \(whole) vs \(split)" }
        if let e = whole.error, !(400...599).contains(e.status.code) { return "error \(e) has status \(e.status)" }
        if whole.requests.count > 1 + input.count / 16 { return "more requests than bytes allow" }
        // Request-target splitting never crashes and yields a path starting with "/".
        if let target = HTTPTarget(String(decoding: input, as: UTF8.self)), !target.path.hasPrefix("/") {
            return "path without a leading slash"
        }

        var roomy = fuzzLimits
        roomy.maxHeaderBytes *= 4
        roomy.maxRequestLineLength *= 2
        for r in whole.requests {
            if r.body.count > fuzzLimits.maxBodySize { return "body over the limit" }
            var text = "\(r.method) \(r.target) \(r.version)\r\n"
            var expectedHeaders: [String] = []
            for h in r.headers {
                let lower = h.lowercased()
                if lower.hasPrefix("content-length:") || lower.hasPrefix("transfer-encoding:") { continue }
                text += h + "\r\n"
                expectedHeaders.append(h)
            }
            if !r.body.isEmpty {
                text += "Content-Length: \(r.body.count)\r\n"
                expectedHeaders.append("Content-Length: \(r.body.count)")
            }
            text += "\r\n"
            let again = parseHTTP([Array(text.utf8)[...] + r.body], limits: roomy)
            guard again.error == nil, again.requests.count == 1 else {
                return "re-serialised request does not parse: \(again) from \(text)"
            }
            var expected = r
            expected.headers = expectedHeaders
            if again.requests[0] != expected { return "round trip changed the request: \(again.requests[0]) vs \(expected)" }
        }
        return nil
    }

    // MARK: WebSocket

    struct FrameOutcome: Equatable {
        var frames: [WebSocketFrame] = []
        var error: WebSocketError?
    }

    struct MessageOutcome: Equatable {
        var messages: [WebSocketMessage] = []
        var error: WebSocketError?
    }

    static func decodeFrames(_ pieces: [ArraySlice<UInt8>], role: WebSocketRole, max: Int) -> FrameOutcome {
        var d = WebSocketFrameDecoder(role: role, maxPayloadSize: max)
        var o = FrameOutcome()
        do {
            for p in pieces {
                d.append(p)
                while let f = try d.nextFrame() { o.frames.append(f) }
            }
        } catch { o.error = error }
        return o
    }

    static func decodeMessages(_ pieces: [ArraySlice<UInt8>], role: WebSocketRole, max: Int) -> MessageOutcome {
        var d = WebSocketMessageDecoder(role: role, maxMessageSize: max)
        var o = MessageOutcome()
        do {
            for p in pieces {
                d.append(p)
                while let m = try d.nextMessage() { o.messages.append(m) }
            }
        } catch { o.error = error }
        return o
    }

    /// 1. Frame and message outcomes do not depend on chunking (both roles).
    /// 2. Each decoded frame re-encodes (masked and unmasked) to bytes that
    ///    decode to the same frame, with the advertised size.
    /// 3. Text messages are exactly the valid UTF-8 inputs (cross-checked
    ///    against the standard library's validator); errors carry a close
    ///    code a peer may send.
    static func webSocket(_ input: [UInt8]) -> String? {
        let max = 4096
        let pieces = chunks(input)
        for role in [WebSocketRole.server, .client] {
            let whole = decodeFrames([input[...]], role: role, max: max)
            if whole != decodeFrames(pieces, role: role, max: max) { return "chunking changed frames (\(role))" }
            if let e = whole.error, !e.closeCode.isValidOnWire { return "error close code \(e.closeCode) not sendable" }
            for f in whole.frames {
                if f.payload.count > max { return "frame over the limit" }
                if f.opcode.isControl && (f.payload.count > 125 || !f.fin) { return "bad control frame accepted" }
                let key: (UInt8, UInt8, UInt8, UInt8) = (UInt8(truncatingIfNeeded: f.payload.count), 0x5A, 0xA5, 0x01)
                let masked = f.encoded(maskingKey: key)
                let plain = f.encoded()
                if masked.count != f.encodedSize(masked: true) || plain.count != f.encodedSize(masked: false) {
                    return "encodedSize disagrees with encoded bytes"
                }
                let back = decodeFrames([(role == .server ? masked : plain)[...]], role: role, max: max)
                if back.error != nil || back.frames != [f] { return "frame round trip failed: \(f) → \(back)" }
            }

            let messages = decodeMessages([input[...]], role: role, max: max)
            if messages != decodeMessages(pieces, role: role, max: max) { return "chunking changed messages (\(role))" }
            if let e = messages.error, !e.closeCode.isValidOnWire { return "error close code \(e.closeCode) not sendable" }
            for case .text(let s) in messages.messages where String(validating: Array(s.utf8), as: UTF8.self) == nil {
                return "invalid text delivered"
            }
        }
        // The validator agrees with the standard library on the raw input.
        if UTF8Validator.isValid(input) != (String(validating: input, as: UTF8.self) != nil) {
            return "UTF8Validator disagrees with the standard library"
        }
        return nil
    }
}
