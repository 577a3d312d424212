import XCTest
import Foundation
import Synchronization
import ParleyCore
import ParleyTestSupport
@testable import ParleyChat

/// A webhook receiver is a peer: a raw TCP listener on loopback that reads
/// each request whole and then answers with `head` followed by `tail`
/// repeated without end, `piece` bytes at a time with `gapMicroseconds`
/// between (an empty `tail`: nothing more, the connection held open). It
/// notes when the notifier closes the connection (a write or read fails).
final class HostileReceiver: @unchecked Sendable {
    struct Answer: Sendable {
        var head: String
        var tail = ""
        var piece = 65536
        var gapMicroseconds: UInt32 = 0
    }

    let port: UInt16
    private let listener: Int32
    private let answer: Answer
    private let state = Mutex<(requests: Int, closedByClient: Int)>((0, 0))

    init(_ answer: Answer) throws {
        self.answer = answer
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { close(fd); throw XCTSkip("cannot listen on loopback: errno \(errno)") }
        listener = fd
        port = UInt16(bigEndian: a.sin_port)
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Requests read whole, and connections the notifier closed while being answered.
    var requests: Int { state.withLock { $0.requests } }
    var closedByClient: Int { state.withLock { $0.closedByClient } }

    func stop() { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            Thread.detachNewThread { [self] in serve(fd) }
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        guard readRequest(fd) else { return }
        state.withLock { $0.requests += 1 }
        let head = Array(answer.head.utf8), tail = Array(answer.tail.utf8)
        guard write(fd, head) else { return state.withLock { $0.closedByClient += 1 } }
        if tail.isEmpty {
            var b = [UInt8](repeating: 0, count: 4096)
            while recv(fd, &b, b.count, 0) > 0 {}
            return state.withLock { $0.closedByClient += 1 }
        }
        // A long buffer of the tail repeated, sent `piece` bytes at a time, forever.
        var stream: [UInt8] = []
        while stream.count < max(answer.piece, 65536) { stream += tail }
        var at = 0
        while true {
            let n = min(answer.piece, stream.count - at)
            guard write(fd, Array(stream[at..<at + n])) else { return state.withLock { $0.closedByClient += 1 } }
            at = (at + n) % (stream.count - stream.count % tail.count)
            if answer.gapMicroseconds > 0 { usleep(answer.gapMicroseconds) }
        }
    }

    /// The request's head and its Content-Length body.
    private func readRequest(_ fd: Int32) -> Bool {
        var got: [UInt8] = []
        var b = [UInt8](repeating: 0, count: 4096)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            let n = recv(fd, &b, b.count, 0)
            guard n > 0 else { return false }
            got += b[..<n]
            guard let e = got.indices.first(where: { got[$0...].starts(with: end) }) else { continue }
            let head = String(decoding: got[..<e], as: UTF8.self).lowercased()
            let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
            if got.count >= e + 4 + length { return true }
        }
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }
}

/// WebhookNotifier against receivers that misbehave on purpose, over real
/// loopback sockets: a head without end, chunk sizes and Content-Lengths
/// past what an Int holds, a body that never ends, a trickle, endless 1xx.
/// Each notification fails and is counted (one attempt each), the
/// connection is closed by the notifier, and nothing crashes. What the
/// reader bounds (the head, a chunk-size line, trailers) fails as soon as
/// the bound is passed, long before the request's timeout; what only time
/// bounds (a body, a trickle) ends at the timeout.
final class WebhookHostileReceiverTests: XCTestCase {
    private var receiver: HostileReceiver?
    private var notifier: WebhookNotifier?
    private var metrics: NotifierMetrics?

    override func tearDown() {
        stop()
        super.tearDown()
    }

    private func stop() {
        notifier?.close()
        notifier = nil
        metrics = nil
        receiver?.stop()
        receiver = nil
    }

    /// A receiver answering `answer`, and one notification on its way to it, given up on after one attempt.
    private func notify(_ answer: HostileReceiver.Answer, timeoutSeconds: Double) throws -> HostileReceiver {
        let r = try HostileReceiver(answer)
        receiver = r
        var config = WebhookConfig(url: try WebhookURL("http://127.0.0.1:\(r.port)/hook"), secret: Array("k".utf8))
        config.intervalSeconds = 0
        config.attempts = 1
        config.concurrency = 1
        config.timeoutSeconds = timeoutSeconds
        let m = NotifierMetrics(registry: MetricsRegistry())
        metrics = m
        let n = try WebhookNotifier(config: config, metrics: m, logger: Logger(label: "test", level: .error))
        notifier = n
        n.notify(ChatNotification(user: "bob", conversation: 1, sender: "alice", group: false))
        return r
    }

    /// The notification to a receiver answering `answer` fails (counted with `reason`, or with a status when nil),
    /// and the notifier closes the connection.
    private func notifyOnce(_ answer: HostileReceiver.Answer, timeoutSeconds: Double, reason: WebhookConnection.Failure.Kind?,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try notify(answer, timeoutSeconds: timeoutSeconds)
        // The wait is a hang guard only: a bounded failure comes at once, a timed one after `timeoutSeconds`.
        waitUntil("the notification given up", timeout: 60, file: file, line: line) { state()["failed"] == 1 }
        waitUntil("the receiver's connection closed by the notifier", timeout: 60, file: file, line: line) { r.closedByClient == 1 }
        let s = state()
        XCTAssertEqual(s["sent"], 0, file: file, line: line)
        XCTAssertEqual(s["connections"], 1, file: file, line: line)
        XCTAssertEqual(s["idle"], 0, "nothing kept of a broken connection", file: file, line: line)
        XCTAssertEqual(r.requests, 1, file: file, line: line)
        for kind in WebhookConnection.Failure.Kind.allCases {
            XCTAssertEqual(metrics!.errors[kind]?.current, kind == reason ? 1 : 0, "errors{reason=\(kind.rawValue)}", file: file, line: line)
        }
    }

    private func state() -> JSONValue {
        let box = Mutex<JSONValue>(.null)
        let done = DispatchSemaphore(value: 0)
        guard notifier!.state({ s in box.withLock { $0 = s }; done.signal() }) else { return .null }
        done.wait()
        return box.withLock { $0 }
    }

    // Bounded by the reader: these fail long before the (2-minute) timeout.

    func testAHeadWithoutEndFailsAtTheHeadBound() throws {
        try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\n", tail: "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"), timeoutSeconds: 120, reason: .badResponse)
    }

    func testAStatusLineWithoutEndFailsAtTheHeadBound() throws {
        try notifyOnce(.init(head: "HTTP/1.1 200 ", tail: "OK"), timeoutSeconds: 120, reason: .badResponse)
    }

    func testChunkSizesPastAnIntFail() throws {
        for size in ["FFFFFFFFFFFFFFFFF", "8000000000000000", "10000000000000000000000000000000000000000"] {
            try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\n"), timeoutSeconds: 120, reason: .badResponse)
            stop()
        }
    }

    func testAChunkSizeLineWithoutEndFails() throws {
        try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1", tail: "0"), timeoutSeconds: 120, reason: .badResponse)
    }

    func testTrailersWithoutEndFail() throws {
        try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", tail: "X-T: aaaaaaaaaaaaaaaa\r\n"),
                       timeoutSeconds: 120, reason: .badResponse)
    }

    func testContentLengthsPastAnIntFail() throws {
        for length in ["9223372036854775808", "99999999999999999999999999", "-1", "1, 2"] {
            try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\nContent-Length: \(length)\r\n\r\n"), timeoutSeconds: 120, reason: .badResponse)
            stop()
        }
    }

    // Bounded by time: the request's timeout ends these.

    func testABodyThatNeverEndsIsCutAtTheTimeout() throws {
        try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n", tail: "0123456789abcdef"),
                       timeoutSeconds: 0.3, reason: .timeout)
    }

    func testAHugeChunkThatNeverEndsIsCutAtTheTimeout() throws {
        try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFF\r\n", tail: "0123456789abcdef"),
                       timeoutSeconds: 0.3, reason: .timeout)
    }

    func testABodyToTheCloseThatNeverEndsIsNotWaitedFor() throws {
        // No framing: the status is known with the head, and the connection is closed, not read to its end.
        try notifyOnce(.init(head: "HTTP/1.1 500 Oops\r\n\r\n", tail: "more"), timeoutSeconds: 120, reason: nil)
    }

    func testBytesNobodyAskedForCloseTheConnection() throws {
        // A whole 200, then bytes without end: read with the response (not reusable) or arriving while it idles, the
        // connection is closed either way, and the notification counts as sent.
        let r = try notify(.init(head: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", tail: "x", piece: 1, gapMicroseconds: 1000),
                           timeoutSeconds: 120)
        waitUntil("sent") { state()["sent"] == 1 }
        waitUntil("closed") { r.closedByClient == 1 }
        waitUntil("not kept") { state()["idle"] == 0 }
    }

    func testATrickledHeadIsCutAtTheTimeout() throws {
        try notifyOnce(.init(head: "HTTP/1.1 200 OK\r\n", tail: "X-A: b\r\n", piece: 1, gapMicroseconds: 2000), timeoutSeconds: 0.3, reason: .timeout)
    }

    func testEndlessInterimResponsesAreCutAtTheTimeout() throws {
        try notifyOnce(.init(head: "", tail: "HTTP/1.1 100 Continue\r\n\r\n"), timeoutSeconds: 0.3, reason: .timeout)
    }
}
