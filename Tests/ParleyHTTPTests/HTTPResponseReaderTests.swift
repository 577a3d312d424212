import XCTest
@testable import ParleyHTTP

/// A client reading responses off a kept-alive connection: where each ends,
/// and whether the connection may carry the next request.
final class HTTPResponseReaderTests: XCTestCase {
    typealias Event = HTTPResponseReader.Event

    /// The responses in `text`, fed whole and again one byte at a time (both must agree), and the bytes left over.
    private func read(_ text: String) throws -> (events: [Event], left: Int) {
        var whole = HTTPResponseReader()
        whole.append(Array(text.utf8))
        var events: [Event] = []
        while case let e = try whole.next(), e != .needMoreData { events.append(e) }
        var bytewise = HTTPResponseReader()
        var trickled: [Event] = []
        for b in text.utf8 {
            bytewise.append(CollectionOfOne(b))
            while case let e = try bytewise.next(), e != .needMoreData { trickled.append(e) }
        }
        XCTAssertEqual(trickled, events, "byte by byte: \(text.debugDescription)")
        return (events, whole.bufferedByteCount)
    }

    func testFramingAndReuse() throws {
        let cases: [(String, [Event], Int)] = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}", [.response(status: 200, reusable: true)], 0),
            ("HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n2\r\nef\r\n0\r\nX-T: 1\r\n\r\n",
             [.response(status: 202, reusable: true)], 0),
            ("HTTP/1.1 500 Oops\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno", [.response(status: 500, reusable: false)], 0),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", [.response(status: 200, reusable: false)], 0),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", [.response(status: 200, reusable: true)], 0),
            ("HTTP/1.1 204 No Content\r\n\r\n", [.response(status: 204, reusable: true)], 0),
            // Bare LF line ends, and the two mixed: the head ends at the first empty line after the status line.
            ("HTTP/1.1 200 OK\nContent-Length: 1\n\nx", [.response(status: 200, reusable: true)], 0),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", [.response(status: 200, reusable: true)], 0),
            ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx", [.response(status: 201, reusable: true)], 0),
            // No framing, or a coding other than chunked last: the close ends the body, known as soon as the head is in.
            ("HTTP/1.1 200 OK\r\n\r\nto the close", [.response(status: 200, reusable: false)], 12),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", [.response(status: 200, reusable: false)], 0),
            // Two responses back to back, and bytes after a complete one.
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
             [.response(status: 200, reusable: true), .response(status: 503, reusable: true)], 0),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", [.response(status: 200, reusable: true)], 1),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", [], 0),
        ]
        for (text, events, left) in cases {
            let got = try read(text)
            XCTAssertEqual(got.events, events, text.debugDescription)
            XCTAssertEqual(got.left, left, text.debugDescription)
        }
    }

    func testMalformedResponsesThrow() {
        for bad in ["HTTP/1.1 101 Switching Protocols\r\n\r\n",
                    "\r\n\r\n",
                    "HTTP/1.1 000 Zero\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 099 Low\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n" + String(repeating: "X-Pad: aaaa\r\n", count: 2000),
                    "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + String(repeating: "1", count: 2000),
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + String(repeating: "a", count: 20000)] {
            var r = HTTPResponseReader()
            r.append(Array(bad.utf8))
            XCTAssertThrowsError(try { while try r.next() != .needMoreData {} }(), String(bad.prefix(80)).debugDescription)
            var trickled = HTTPResponseReader()
            XCTAssertThrowsError(try {
                for b in bad.utf8 {
                    trickled.append(CollectionOfOne(b))
                    while try trickled.next() != .needMoreData {}
                }
            }(), "byte by byte: " + String(bad.prefix(80)).debugDescription)
        }
    }
}
