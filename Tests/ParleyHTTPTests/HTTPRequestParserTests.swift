import XCTest
@testable import ParleyHTTP

final class HTTPRequestParserTests: XCTestCase {
    /// Feeds `text` (optionally one byte at a time) and collects every complete request.
    private func parseAll(_ text: String, byteByByte: Bool = false,
                          limits: HTTPRequestParser.Limits = .init()) throws -> [HTTPRequest] {
        var parser = HTTPRequestParser(limits: limits)
        var out: [HTTPRequest] = []
        if byteByByte {
            for b in text.utf8 {
                parser.append(CollectionOfOne(b))
                while let r = try parser.nextRequest() { out.append(r) }
            }
        } else {
            parser.append(Array(text.utf8))
            while let r = try parser.nextRequest() { out.append(r) }
        }
        return out
    }

    private func parseError(_ text: String, limits: HTTPRequestParser.Limits = .init()) -> HTTPParseError? {
        do {
            _ = try parseAll(text, limits: limits)
            return nil
        } catch {
            return error as? HTTPParseError
        }
    }

    func testSimpleGetWithQueryAndKeepAlive() throws {
        for byteByByte in [false, true] {
            let reqs = try parseAll("GET /api/rooms%20x?name=stand+up&flag&e=%C3%A9 HTTP/1.1\r\nHost: a\r\nX-Thing:  v  \r\n\r\n",
                                    byteByByte: byteByByte)
            XCTAssertEqual(reqs.count, 1)
            let h = reqs[0].head
            XCTAssertEqual(h.method, "GET")
            XCTAssertEqual(h.version, .http1_1)
            XCTAssertEqual(h.path, "/api/rooms x")
            XCTAssertEqual(h.query.map(\.name), ["name", "flag", "e"])
            XCTAssertEqual(h.query.map(\.value), ["stand up", "", "é"])
            XCTAssertEqual(h.headers["x-thing"], "v")
            XCTAssertTrue(h.keepAlive)
            XCTAssertEqual(h.bodyLength, .none)
            XCTAssertEqual(reqs[0].body, [])
        }
    }

    func testContentLengthBodyAndPipelining() throws {
        let text = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        for byteByByte in [false, true] {
            let reqs = try parseAll(text, byteByByte: byteByByte)
            XCTAssertEqual(reqs.count, 2)
            XCTAssertEqual(reqs[0].body, Array("hello".utf8))
            XCTAssertEqual(reqs[0].head.bodyLength, .contentLength(5))
            XCTAssertEqual(reqs[1].head.target, "/b")
            XCTAssertFalse(reqs[1].head.keepAlive)
        }
    }

    func testChunkedBodyWithExtensionsAndTrailers() throws {
        let text = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-Trailer: t\r\n\r\n"
        for byteByByte in [false, true] {
            let reqs = try parseAll(text, byteByByte: byteByByte)
            XCTAssertEqual(reqs.count, 1)
            XCTAssertEqual(reqs[0].head.bodyLength, .chunked)
            XCTAssertEqual(String(decoding: reqs[0].body, as: UTF8.self), "hello, chunked!")
        }
    }

    func testEventSequence() throws {
        var p = HTTPRequestParser()
        p.append(Array("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab".utf8))
        guard case .head(let head) = try p.next() else { return XCTFail("expected head") }
        XCTAssertEqual(head.method, "POST")
        guard case .body(let b1) = try p.next() else { return XCTFail("expected body") }
        XCTAssertEqual(b1, Array("ab".utf8))
        guard case .needMoreData = try p.next() else { return XCTFail("expected needMoreData") }
        p.append(Array("cd".utf8))
        guard case .body(let b2) = try p.next() else { return XCTFail("expected body") }
        XCTAssertEqual(b2, Array("cd".utf8))
        guard case .end = try p.next() else { return XCTFail("expected end") }
        guard case .needMoreData = try p.next() else { return XCTFail("expected needMoreData") }
    }

    func testKeepAliveRules() throws {
        XCTAssertFalse(try parseAll("GET / HTTP/1.0\r\n\r\n")[0].head.keepAlive)
        XCTAssertTrue(try parseAll("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")[0].head.keepAlive)
        XCTAssertTrue(try parseAll("GET / HTTP/1.1\r\nHost: h\r\n\r\n")[0].head.keepAlive)
        XCTAssertFalse(try parseAll("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n")[0].head.keepAlive)
        // After a non-keep-alive request the parser stops consuming.
        var p = HTTPRequestParser()
        p.append(Array("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n".utf8))
        XCTAssertNotNil(try p.nextRequest())
        XCTAssertTrue(p.isClosed)
        XCTAssertNil(try p.nextRequest())
    }

    func testLimitsMapToStatusCodes() {
        var small = HTTPRequestParser.Limits()
        small.maxRequestLineLength = 64
        small.maxHeaderBytes = 128
        small.maxHeaderCount = 3
        small.maxBodySize = 10

        let longTarget = "GET /" + String(repeating: "a", count: 100) + " HTTP/1.1\r\nHost: h\r\n\r\n"
        XCTAssertEqual(parseError(longTarget, limits: small)?.status.code, 414)
        // Even without a line end yet, the limit trips once the bytes exceed it.
        XCTAssertEqual(parseError("GET /" + String(repeating: "a", count: 100), limits: small)?.status.code, 414)

        let bigHeader = "GET / HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "b", count: 200) + "\r\n\r\n"
        XCTAssertEqual(parseError(bigHeader, limits: small)?.status.code, 431)
        let many = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
        XCTAssertEqual(parseError(many, limits: small)?.status.code, 431)

        XCTAssertEqual(parseError("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", limits: small)?.status.code, 413)
        XCTAssertEqual(parseError("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n")?.status.code, 413)
        let chunks = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n"
        XCTAssertEqual(parseError(chunks, limits: small)?.status.code, 413)
    }

    func testMalformedRequestsTable() {
        let cases: [(String, Int, String)] = [
            ("GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "two Hosts"),
            ("GET /\r\n\r\n", 400, "HTTP/0.9 style"),
            ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "double space"),
            ("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bad method char"),
            ("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, "trailing space"),
            ("GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400, "bad protocol name"),
            ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP/2 on a 1.1 parser"),
            ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, "space before colon"),
            ("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400, "no colon"),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n", 400, "obs-fold"),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{0}b\r\n\r\n", 400, "NUL in value"),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, "bare CR"),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400, "bad CL"),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, "negative CL"),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "conflicting CL"),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "CL + TE"),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "gzip coding"),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "stacked coding"),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, "chunked not last"),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "TE in 1.0"),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad chunk size"),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400, "chunk overrun"),
            ("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "too many leading empty lines"),
        ]
        for (text, status, why) in cases {
            XCTAssertEqual(parseError(text)?.status.code, status, why)
        }
    }

    func testParserStaysFailed() {
        var p = HTTPRequestParser()
        p.append(Array("BAD\r\n".utf8))
        XCTAssertThrowsError(try p.next())
        p.append(Array("GET / HTTP/1.1\r\nHost: h\r\n\r\n".utf8))
        XCTAssertThrowsError(try p.next())
    }

    func testTargetSplitAndPercentDecoding() {
        let t = HTTPTarget("/a%2Fb/c?x=1&y=%41%42&x=2#frag")
        XCTAssertEqual(t?.path, "/a/b/c")
        XCTAssertEqual(t?.rawQuery, "x=1&y=%41%42&x=2")
        XCTAssertEqual(t?.queryValue("x"), "1")
        XCTAssertEqual(t?.queryValue("y"), "AB")
        XCTAssertEqual(t?.query.count, 3)
        XCTAssertNil(HTTPTarget("/bad%zz"))
        XCTAssertNil(HTTPTarget("/trunc%4"))
        XCTAssertNil(HTTPTarget("/nul%00"))
        XCTAssertNil(HTTPTarget("/badutf8%C3"))
        XCTAssertNil(HTTPTarget("http://absolute/form"))
        XCTAssertEqual(HTTPTarget("/plus+stays")?.path, "/plus+stays")
    }

    func testResponseWriter() {
        var r = HTTPResponse.text(.ok, "hi")
        r.headers.add("X-Evil", "a\r\nSet-Cookie: x")
        let text = String(decoding: r.serialized(keepAlive: false, date: 784111777), as: UTF8.self)
        XCTAssertEqual(text, "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
            + "Content-Type: text/plain; charset=utf-8\r\nX-Evil: a  Set-Cookie: x\r\nContent-Length: 2\r\n"
            + "Connection: close\r\n\r\nhi")
        let noContent = String(decoding: HTTPResponse(status: .noContent).serialized(), as: UTF8.self)
        XCTAssertEqual(noContent, "HTTP/1.1 204 No Content\r\n\r\n")

        // What we write, we parse back as a well-formed message (round trip through the request grammar's field rules).
        let err = HTTPResponse.error(.uriTooLong).serialized(keepAlive: false)
        XCTAssertTrue(String(decoding: err, as: UTF8.self).hasPrefix("HTTP/1.1 414 URI Too Long\r\n"))
    }
}

final class HTTPResponseHeadTests: XCTestCase {
    func testParsesWhatTheWriterWrites() throws {
        var r = HTTPResponse.text(.notFound, "nope")
        r.headers.add("X-A", "1")
        let bytes = r.serialized(keepAlive: false)
        XCTAssertNil(try HTTPResponseHead.parse(bytes.prefix(20)), "incomplete head")
        let (head, consumed) = try XCTUnwrap(try HTTPResponseHead.parse(bytes))
        XCTAssertEqual(head.status, HTTPStatus(code: 404, reason: "Not Found"))
        XCTAssertEqual(head.version, .http1_1)
        XCTAssertEqual(head.headers["x-a"], "1")
        XCTAssertEqual(head.headers["Connection"], "close")
        XCTAssertEqual(Array(bytes[consumed...]), Array("nope".utf8))
    }

    func testRejectsMalformedAndOversized() {
        for bad in ["HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "\r\nHTTP/1.1 200 OK\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "HTTP/1.1 200 OK\r\nX: a\u{1}\r\n\r\n"] {
            XCTAssertThrowsError(try HTTPResponseHead.parse(Array(bad.utf8)), bad)
        }
        let huge = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 20000)
        XCTAssertThrowsError(try HTTPResponseHead.parse(Array(huge.utf8)))
        XCTAssertNotNil(try HTTPResponseHead.parse(Array("HTTP/1.1 204\r\n\r\n".utf8)))
    }
}
