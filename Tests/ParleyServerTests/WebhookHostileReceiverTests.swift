import XCTest
import Foundation
import Synchronization
import ParleyCore
import ParleyTestSupport
@testable import ParleyChat

/// A webhook receiver is a peer: a raw TCP listener on loopback that reads
/// each request whole and then answers with `head` followed by `tail`
/// repeated without end, `piece` bytes at a time with `gapMicroseconds`
/// between (an empty `tail`: nothing more, and the next request on the
/// connection is read and answered the same way), or with `close` closes
/// the connection without a word. The answer to the Nth request is
/// `plan[N-1]`, the last one for the rest. It notes each request's delivery
/// id and attempt, and when the notifier closes the connection (a write or
/// read fails).
final class HostileReceiver: @unchecked Sendable {
    struct Answer: Sendable {
        var head: String
        var tail = ""
        var piece = 65536
        var gapMicroseconds: UInt32 = 0
        var close = false

        /// Closes the connection once the request is read, without answering.
        static let close = Answer(head: "", close: true)
        /// Reads the request and answers nothing, the connection held open.
        static let silence = Answer(head: "")
    }

    /// A request as received: its `X-Parley-Delivery`, its body's `attempt`, and which connection (from 1) carried it.
    struct Request: Equatable, Sendable {
        var delivery: String
        var attempt: Int
        var connection: Int
    }

    let port: UInt16
    private let listener: Int32
    private let plan: [Answer]
    private let state = Mutex<(received: [Request], connections: Int, closedByClient: Int)>(([], 0, 0))

    convenience init(_ answer: Answer) throws { try self.init(plan: [answer]) }

    init(plan: [Answer]) throws {
        precondition(!plan.isEmpty)
        self.plan = plan
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
    var requests: Int { state.withLock { $0.received.count } }
    var received: [Request] { state.withLock { $0.received } }
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
        let connection = state.withLock { $0.connections += 1; return $0.connections }
        var answered = false
        while true {
            guard let request = readRequest(fd) else {
                if answered { state.withLock { $0.closedByClient += 1 } }
                return
            }
            let answer = state.withLock { s in
                s.received.append(Self.parse(request, connection: connection))
                return plan[min(s.received.count, plan.count) - 1]
            }
            if answer.close { return }
            answered = true
            guard write(fd, Array(answer.head.utf8)) else { return state.withLock { $0.closedByClient += 1 } }
            if answer.tail.isEmpty { continue }
            return stream(answer, fd)
        }
    }

    private static func parse(_ request: [UInt8], connection: Int) -> Request {
        let text = String(decoding: request, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let delivery = parts[0].split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-parley-delivery:") }
            .map { String($0.dropFirst(18)).trimmingCharacters(in: .whitespaces) } ?? ""
        let attempt = (try? JSONValue.parse(parts.dropFirst().joined(separator: "\r\n\r\n")))?["attempt"]?.intValue ?? 0
        return Request(delivery: delivery, attempt: attempt, connection: connection)
    }

    private func stream(_ answer: Answer, _ fd: Int32) {
        let tail = Array(answer.tail.utf8)
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

    /// The request's head and its Content-Length body (the notifier sends one request at a time).
    private func readRequest(_ fd: Int32) -> [UInt8]? {
        var got: [UInt8] = []
        var b = [UInt8](repeating: 0, count: 4096)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            let n = recv(fd, &b, b.count, 0)
            guard n > 0 else { return nil }
            got += b[..<n]
            guard let e = got.indices.first(where: { got[$0...].starts(with: end) }) else { continue }
            let head = String(decoding: got[..<e], as: UTF8.self).lowercased()
            let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
            if got.count >= e + 4 + length { return got }
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
/// bounds (a body, a trickle) ends at the timeout. Retries go against a
/// receiver that closes, one that never answers, one that answers 500, and
/// all three in turn: each attempt is read by the receiver, in order, with
/// one delivery id, and counted by why it failed.
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
        try notify(plan: [answer], timeoutSeconds: timeoutSeconds)
    }

    /// A receiver answering by `plan`, and one notification on its way to it, given up on after `attempts`, the
    /// first retry `backoffSeconds` after the first failure.
    private func notify(plan: [HostileReceiver.Answer], timeoutSeconds: Double, attempts: Int = 1,
                        backoffSeconds: Double = 0.001) throws -> HostileReceiver {
        let r = try HostileReceiver(plan: plan)
        receiver = r
        var config = WebhookConfig(url: try WebhookURL("http://127.0.0.1:\(r.port)/hook"), secret: Array("k".utf8))
        config.intervalSeconds = 0
        config.attempts = attempts
        config.backoffSeconds = backoffSeconds
        config.idleSeconds = 600   // a kept connection stays for the retry however slow the machine
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

    // Retries: each attempt against a receiver that misbehaves, with small backoffs; counts and order, not time.

    private static let internalError = HostileReceiver.Answer(head: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")

    /// The notification failed after `attempts`, each a request the receiver read, in order with one delivery id,
    /// and each failed attempt counted under `reason` (a status when nil).
    private func checkGivenUp(_ r: HostileReceiver, attempts: Int, reason: WebhookConnection.Failure.Kind?, connections: Int,
                              file: StaticString = #filePath, line: UInt = #line) {
        waitUntil("given up", timeout: 60, file: file, line: line) { state()["failed"] == 1 }
        let got = r.received
        XCTAssertEqual(got.map(\.attempt), Array(1...attempts), "the attempts in order", file: file, line: line)
        XCTAssertEqual(Set(got.map(\.delivery)).count, 1, "one delivery id", file: file, line: line)
        XCTAssertFalse(got[0].delivery.isEmpty, file: file, line: line)
        let s = state()
        XCTAssertEqual(s["retried"], JSONValue(attempts - 1), file: file, line: line)
        XCTAssertEqual(s["sent"], 0, file: file, line: line)
        XCTAssertEqual(s["queued"], 0, "nothing left to retry", file: file, line: line)
        XCTAssertEqual(s["connections"], JSONValue(connections), file: file, line: line)
        XCTAssertEqual(Set(got.map(\.connection)).count, connections, file: file, line: line)
        for kind in WebhookConnection.Failure.Kind.allCases {
            XCTAssertEqual(metrics!.errors[kind]?.current, kind == reason ? attempts : 0, "errors{reason=\(kind.rawValue)}", file: file, line: line)
        }
    }

    func testAReceiverThatClosesWithoutAnAnswerIsRetriedOnANewConnectionUntilTheAttemptsRunOut() throws {
        let r = try notify(plan: [.close], timeoutSeconds: 120, attempts: 3)
        checkGivenUp(r, attempts: 3, reason: .closed, connections: 3)
    }

    func testAReceiverThatNeverAnswersIsRetriedAfterEachTimeoutUntilTheAttemptsRunOut() throws {
        let r = try notify(plan: [.silence], timeoutSeconds: 0.3, attempts: 3)
        checkGivenUp(r, attempts: 3, reason: .timeout, connections: 3)
        waitUntil("each timed-out connection closed by the notifier") { r.closedByClient == 3 }
    }

    func testAReceiverAnswering500IsRetriedOnTheKeptConnectionUntilTheAttemptsRunOut() throws {
        let r = try notify(plan: [Self.internalError], timeoutSeconds: 120, attempts: 3)
        checkGivenUp(r, attempts: 3, reason: nil, connections: 1)
    }

    func testEachMisbehaviourCostsOneAttemptAndTheNextAttemptIsTaken() throws {
        // Closed, then silent until the timeout, then 500 (the connection kept), then 200 on that connection.
        let ok = HostileReceiver.Answer(head: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        let r = try notify(plan: [.close, .silence, Self.internalError, ok], timeoutSeconds: 0.3, attempts: 4)
        waitUntil("sent", timeout: 60) { state()["sent"] == 1 }
        let got = r.received
        XCTAssertEqual(got.map(\.attempt), [1, 2, 3, 4])
        XCTAssertEqual(got.map(\.connection), [1, 2, 3, 3], "a new connection after a close and after a timeout, not after a 500")
        XCTAssertEqual(Set(got.map(\.delivery)).count, 1)
        let s = state()
        XCTAssertEqual(s["retried"], 3)
        XCTAssertEqual(s["failed"], 0)
        XCTAssertEqual(s["connections"], 3)
        XCTAssertEqual(s["idle"], 1, "the connection that carried the 200 is kept")
        XCTAssertEqual(metrics!.errors[.closed]?.current, 1)
        XCTAssertEqual(metrics!.errors[.timeout]?.current, 1)
        XCTAssertEqual(metrics!.errors[.badResponse]?.current, 0)
        XCTAssertEqual(metrics!.errors[.connect]?.current, 0)
    }

    func testARetryWaitsForItsBackoff() throws {
        // A 10-minute backoff: once the first attempt has failed, the notification waits to be retried, and no
        // second request comes however long the test takes (a retry before its backoff would be a bug, not a race).
        let r = try notify(plan: [Self.internalError], timeoutSeconds: 120, attempts: 3, backoffSeconds: 600)
        waitUntil("the first attempt failed") { state()["retried"] == 1 }
        let s = state()
        XCTAssertEqual(s["queued"], 1, "waiting for its retry")
        XCTAssertEqual(s["inFlight"], 0)
        XCTAssertEqual(s["failed"], 0)
        XCTAssertEqual(r.received.map(\.attempt), [1])
    }
}
