import XCTest
import Foundation
import Synchronization
import ParleyCore
import ParleyIO
import ParleyTestSupport
@testable import ParleyServer
@testable import ParleyChat
@testable import ParleyProtocol

/// A local webhook receiver: python3's http.server on loopback (HTTP/1.1,
/// keep-alive, a thread per connection) that checks each request's
/// signature as docs/protocol.md tells a receiver to (HMAC-SHA256 over
/// `timestamp.body`, a timestamp within 5 minutes) and writes one JSON line
/// per request to a file, with the client's port (which connection carried
/// it). It answers 401 to a bad signature, else the statuses of `plan` in
/// turn, then 200, each with a small body framed by Content-Length, or by
/// chunks with `chunked`. The requests numbered in `close` (from 1) are
/// answered with `Connection: close`, those in `drop` without it, and then
/// the receiver closes the connection; those in `reset` are read and not
/// answered at all, the connection closed (a receiver closing a kept-alive
/// connection as a request arrives). With `hold`, the first request waits
/// until the test creates the gate file; the requests numbered in `stall`
/// (counted as their heads arrive) wait for it before their body is read.
final class WebhookReceiver {
    let process: Process
    let port: Int
    let log: String
    let gate: String

    static let script = """
    import sys, json, hmac, hashlib, time, os, http.server, ssl
    import threading
    secret, log, plan, gate, framing = sys.argv[1].encode(), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    statuses = [int(x) for x in plan.split(",") if x]
    close, drop, reset, held, stall = [{int(x) for x in a.split(",") if x} for a in sys.argv[6:11]]
    seen = 0
    arrived = 0
    lock = threading.Lock()
    def record(o):
        with open(log, "a") as f: f.write(json.dumps(o) + "\\n")
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            global seen, arrived
            with lock:
                arrived += 1
                a = arrived
            if a in stall:
                record({"holding": True})
                while not os.path.exists(gate): time.sleep(0.005)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ts = self.headers.get("X-Parley-Timestamp", "")
            mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            ok = ts.isdigit() and abs(time.time() - int(ts)) < 300 and \\
                hmac.compare_digest(self.headers.get("X-Parley-Signature", ""), "sha256=" + mac)
            with lock:
                seen += 1
                n = seen
            if n in reset:
                self.close_connection = True
                return
            if n in held:
                record({"holding": True})
                while not os.path.exists(gate): time.sleep(0.005)
            status = (statuses[n - 1] if n <= len(statuses) else 200) if ok else 401
            self.send_response(status)
            answer = b'{"received":true}'
            if framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                answer = b"5\\r\\n" + answer[:5] + b"\\r\\n" + b"%x\\r\\n" % (len(answer) - 5) + answer[5:] + b"\\r\\n0\\r\\n\\r\\n"
            else:
                self.send_header("Content-Length", str(len(answer)))
            if n in close: self.send_header("Connection", "close")
            if n in drop: self.close_connection = True
            self.end_headers()
            with lock:
                record({"verified": ok, "status": status, "delivery": self.headers.get("X-Parley-Delivery"),
                        "type": self.headers.get("Content-Type"), "port": self.client_address[1], "body": json.loads(body)})
            self.wfile.write(answer)
        def log_message(self, *args): pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    if len(sys.argv) > 12:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[11], sys.argv[12])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """

    let secure: Bool

    /// With `tls` (certificate and key files), the receiver speaks HTTPS.
    init(secret: String, plan: [Int] = [], hold: Bool = false, chunked: Bool = false, close: [Int] = [], drop: [Int] = [],
         reset: [Int] = [], stall: [Int] = [], tls: (cert: String, key: String)? = nil) throws {
        secure = tls != nil
        let dir = tempDir("webhook")
        let scriptPath = dir + "/receiver.py"
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        log = dir + "/requests.jsonl"
        gate = dir + "/open"
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let list = { (a: [Int]) in a.map(String.init).joined(separator: ",") }
        process.arguments = ["python3", scriptPath, secret, log, list(plan), gate, chunked ? "chunked" : "length",
                             list(close), list(drop), list(reset), hold ? "1" : "", list(stall)] + (tls.map { [$0.cert, $0.key] } ?? [])
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard let p = Int(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw XCTSkip("the python3 webhook receiver did not start: \(line)")
        }
        port = p
    }

    var url: String { secure ? "https://localhost:\(port)/hooks/parley?v=1" : "http://127.0.0.1:\(port)/hooks/parley?v=1" }

    /// The requests answered so far (the holding marker left out), in the order answered.
    var requests: [JSONValue] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONValue.parse(String($0)) }.filter { $0["holding"] == nil }
    }

    var holding: Bool { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("\"holding\"") }

    func open() { FileManager.default.createFile(atPath: gate, contents: Data()) }

    func stop() {
        open()
        process.terminate()
        process.waitUntilExit()
    }
}

/// Offline notifications through the webhook over real loopback sockets:
/// chat devices on real WebSocket sessions, the notifier's HTTP client, a
/// python3 receiver that verifies every signature.
final class ChatNotifierTests: ChatTestCase {
    let secret = "0123456789abcdef-webhook"
    var receiver: WebhookReceiver?

    override func tearDown() {
        super.tearDown()
        receiver?.stop()
    }

    func startWithWebhook(plan: [Int] = [], hold: Bool = false, chunked: Bool = false, close: [Int] = [], drop: [Int] = [],
                          reset: [Int] = [], secret serverSecret: String? = nil, tls: (cert: String, key: String)? = nil,
                          _ configure: @escaping (inout ServerConfig) -> Void = { _ in }) throws {
        let r = try WebhookReceiver(secret: secret, plan: plan, hold: hold, chunked: chunked, close: close, drop: drop, reset: reset,
                                    tls: tls)
        receiver = r
        try start { c in
            c.chatWebhookURL = r.url
            c.chatWebhookSecret = serverSecret ?? self.secret
            c.chatWebhookIntervalMs = 0
            c.chatWebhookConcurrency = 1
            c.chatWebhookBackoffMs = 20
            c.chatWebhookTimeoutMs = hold ? 120_000 : 10_000  // a held request must not time out meanwhile
            configure(&c)
        }
    }

    /// The notifier's own totals and queue (`GET /admin/chat/notifier`'s document).
    func notifierState() -> JSONValue {
        let box = Mutex<JSONValue>(.null)
        let done = DispatchSemaphore(value: 0)
        server.front.notifier!.state { s in box.withLock { $0 = s }; done.signal() }
        done.wait()
        return box.withLock { $0 }
    }

    func testABurstToAnOfflineUserIsOneNotificationAndOneToOneGoesBeforeGroupWhenTheReceiverIsSlow() throws {
        try startWithWebhook(hold: true)
        let r = receiver!
        let carol = try device("carol"), erin = try device("erin"), alice = try device("alice"), henry = try device("henry")
        // The receiver holds the first notification: the only request in flight (concurrency 1).
        _ = try carol.call(.chatSend(to: "dave", clientId: "d1", text: "first"))
        waitUntil("the receiver holds dave's notification") { r.holding }
        // Behind it: a group message to offline frank (normal), then a burst of five 1:1 messages to offline bob (high).
        let group = try erin.call(.chatCreateGroup(name: "g", members: ["frank"]))["conversation"]!.intValue!
        _ = try erin.call(.chatSend(group: Int64(group), clientId: "g1", text: "to the group"))
        for i in 1...5 { _ = try alice.call(.chatSend(to: "bob", clientId: "b\(i)", text: "secret text \(i)")) }
        // Henry is online: no notification for him.
        _ = try alice.call(.chatSend(to: "henry", clientId: "h1", text: "you are here"))
        XCTAssertEqual(try henry.nextEvent("chat.message")["text"], "you are here")
        waitUntil("two users waiting, four messages collapsed") {
            let s = notifierState()
            return s["queued"] == 2 && s["collapsed"] == 4
        }
        r.open()
        waitUntil("three notifications") { r.requests.count == 3 }
        let got = r.requests
        XCTAssertEqual(got.map { $0["verified"] }, [true, true, true], "every signature checks out")
        XCTAssertEqual(got.map { $0["body"]?["user"] }, ["dave", "bob", "frank"], "1:1 (high) before the group (normal)")
        let bob = got[1]["body"]!
        XCTAssertEqual(bob["count"], 5, "the burst is one notification")
        XCTAssertEqual(bob["priority"], "high")
        XCTAssertEqual(bob["sender"], "alice")
        XCTAssertEqual(bob["group"], false)
        XCTAssertEqual(bob["type"], "chat.notification")
        XCTAssertNil(bob["text"], "no message text unless chat-webhook-include-text")
        XCTAssertEqual(got[2]["body"]?["priority"], "normal")
        XCTAssertEqual(got[2]["body"]?["group"], true)
        XCTAssertEqual(got[2]["body"]?["conversation"]?.intValue, group)
        XCTAssertEqual(got[0]["type"], "application/json")
        waitUntil("three sent") { notifierState()["sent"] == 3 }
        let s = notifierState()
        XCTAssertEqual(s["failed"], 0)
        XCTAssertEqual(s["retried"], 0)
        XCTAssertEqual(s["queued"], 0)
        XCTAssertFalse(got.contains { $0["body"]?["user"] == "henry" })
        _ = carol; _ = alice
    }

    func testFailedAttemptsAreRetriedWithTheSameDeliveryIdUntilTheReceiverTakesThem() throws {
        try startWithWebhook(plan: [500, 503]) { $0.chatWebhookIncludeText = true }
        let r = receiver!
        let alice = try device("alice")
        _ = try alice.call(.chatSend(to: "bob", clientId: "x", text: "see you at 8"))
        waitUntil("the third attempt taken") { r.requests.count == 3 }
        let got = r.requests
        XCTAssertEqual(got.map { $0["status"] }, [500, 503, 200])
        XCTAssertEqual(Set(got.compactMap { $0["delivery"]?.stringValue }).count, 1, "one delivery id over the retries")
        XCTAssertEqual(got.map { $0["body"]?["attempt"] }, [1, 2, 3])
        XCTAssertEqual(got[2]["body"]?["text"], "see you at 8", "chat-webhook-include-text on")
        waitUntil("sent") { notifierState()["sent"] == 1 }
        XCTAssertEqual(notifierState()["retried"], 2)
        XCTAssertEqual(notifierState()["failed"], 0)
    }

    func testAttemptsRunOutAndARefusedSignatureIsNotRetried() throws {
        // The server signs with another key: the receiver answers 401, which is not retried.
        try startWithWebhook(secret: "another-key-of-16-bytes-or-more")
        let alice = try device("alice")
        _ = try alice.call(.chatSend(to: "bob", clientId: "x", text: "x"))
        waitUntil("failed") { notifierState()["failed"] == 1 }
        XCTAssertEqual(receiver!.requests.map { $0["status"] }, [401])
        XCTAssertEqual(receiver!.requests.first?["verified"], false)
        XCTAssertEqual(notifierState()["retried"], 0)
    }

    func testServerErrorsAreRetriedAtMostTheConfiguredAttempts() throws {
        try startWithWebhook(plan: [500, 500, 500, 500]) { $0.chatWebhookAttempts = 3 }
        let alice = try device("alice")
        _ = try alice.call(.chatSend(to: "bob", clientId: "x", text: "x"))
        waitUntil("given up") { notifierState()["failed"] == 1 }
        XCTAssertEqual(receiver!.requests.map { $0["status"] }, [500, 500, 500])
        XCTAssertEqual(notifierState()["retried"], 2)
        XCTAssertEqual(notifierState()["sent"], 0)
    }

    func testAFullQueueDropsAndCounts() throws {
        try startWithWebhook(hold: true) { $0.chatWebhookQueue = 1 }
        let r = receiver!
        let alice = try device("alice")
        _ = try alice.call(.chatSend(to: "u1", clientId: "1", text: "x"))
        waitUntil("held") { r.holding }
        _ = try alice.call(.chatSend(to: "u2", clientId: "2", text: "x"))   // waits: the queue holds one user
        _ = try alice.call(.chatSend(to: "u3", clientId: "3", text: "x"))   // dropped
        _ = try alice.call(.chatSend(to: "u2", clientId: "4", text: "x"))   // collapses into u2's
        waitUntil("dropped and collapsed") { let s = notifierState(); return s["dropped"] == 1 && s["collapsed"] == 1 }
        r.open()
        waitUntil("two sent") { notifierState()["sent"] == 2 }
        XCTAssertEqual(r.requests.map { $0["body"]?["user"] }, ["u1", "u2"])
        XCTAssertEqual(r.requests.last?["body"]?["count"], 2)
    }

    func testAnHTTPSReceiverIsReachedWhenItsCertificateChainsAndNamesTheHost() throws {
        let cert = try TLSCertificate.generateSelfSigned(directory: tempDir("webhook-tls"))
        try startWithWebhook(tls: (cert.certificateFile, cert.privateKeyFile)) { $0.chatWebhookCAFile = cert.certificateFile }
        try notifyInTurn(["bob", "carol"])
        XCTAssertEqual(receiver!.requests.map { $0["verified"] }, [true, true])
        XCTAssertEqual(Set(receiver!.requests.compactMap { $0["port"]?.intValue }).count, 1, "one TLS connection kept for both")
        XCTAssertEqual(notifierState()["connections"], 1)
        XCTAssertEqual(notifierState()["url"]?.stringValue, "https://localhost:\(receiver!.port)")
    }

    /// A notifier of its own (no server) posting to `r` over TLS, one request at a time, one attempt each.
    func directNotifier(_ r: WebhookReceiver, caFile: String) throws -> (WebhookNotifier, NotifierMetrics, () -> JSONValue) {
        var config = WebhookConfig(url: try WebhookURL(r.url), secret: Array(secret.utf8))
        config.caFile = caFile
        config.intervalSeconds = 0
        config.concurrency = 1
        config.attempts = 1
        config.timeoutSeconds = 120
        let metrics = NotifierMetrics(registry: MetricsRegistry())
        let notifier = try WebhookNotifier(config: config, metrics: metrics, logger: Logger(label: "test", level: .error))
        let state = { () -> JSONValue in
            let box = Mutex<JSONValue>(.null)
            let done = DispatchSemaphore(value: 0)
            notifier.state { s in box.withLock { $0 = s }; done.signal() }
            done.wait()
            return box.withLock { $0 }
        }
        return (notifier, metrics, state)
    }

    /// A later request far larger than the first, on the kept-alive TLS connection, to a receiver that reads its
    /// body only after the notifier has handed all of it to the connection: the same connection carries it. (A
    /// request is one write, and a write cap refuses a write only when it finds more than the cap already queued.)
    func testALaterLargerRequestStaysOnItsKeptAliveConnection() throws {
        let cert = try TLSCertificate.generateSelfSigned(directory: tempDir("webhook-tls"))
        let r = try WebhookReceiver(secret: secret, stall: [2], tls: (cert.certificateFile, cert.privateKeyFile))
        receiver = r
        let (notifier, metrics, state) = try directNotifier(r, caFile: cert.certificateFile)
        defer { notifier.close() }
        notifier.notify(ChatNotification(user: "bob", conversation: 1, sender: "alice", group: false))
        waitUntil("the first sent") { state()["sent"] == 1 }
        // A user name of 16 MiB: far more than the loopback socket buffers hold for a receiver that does not read.
        notifier.notify(ChatNotification(user: String(repeating: "u", count: 16 << 20), conversation: 1, sender: "alice", group: false))
        waitUntil("the second request's head at the receiver") { r.holding }
        // The notifier's loop runs one task at a time, and the request's write had begun (its head arrived): this
        // state is taken after the write returned, with most of the 16 MiB queued.
        XCTAssertEqual(state()["connections"], 1)
        r.open()
        waitUntil("the second sent") { state()["sent"] == 2 }
        let s = state()
        XCTAssertEqual(s["connections"], 1, "one connection carried both")
        XCTAssertEqual(s["failed"], 0)
        for kind in WebhookConnection.Failure.Kind.allCases { XCTAssertEqual(metrics.errors[kind]?.current, 0, kind.rawValue) }
    }

    func testAnIdleConnectionIsClosedAfterTheIdleTime() throws {
        try startWithWebhook { $0.chatWebhookIdleMs = 50 }
        try notifyInTurn(["u1"])
        waitUntil("the idle connection closed") { notifierState()["idle"] == 0 }
        let alice = try device("alice", "laptop")
        _ = try alice.call(.chatSend(to: "u2", clientId: "later", text: "x"))
        waitUntil("sent") { notifierState()["sent"] == 2 }
        let ports = receiver!.requests.compactMap { $0["port"]?.intValue }
        XCTAssertEqual(ports.count, 2)
        XCTAssertNotEqual(ports[0], ports[1])
        XCTAssertEqual(notifierState()["connections"], 2)
        XCTAssertEqual(notifierState()["retried"], 0)
    }

    func testAnHTTPSReceiverWhoseCertificateNamesAnotherHostGetsNothing() throws {
        let cert = try TLSCertificate.generateSelfSigned(directory: tempDir("webhook-tls"), commonName: "elsewhere.example",
                                                         subjectAltNames: ["DNS:elsewhere.example"])
        try startWithWebhook(tls: (cert.certificateFile, cert.privateKeyFile)) {
            $0.chatWebhookCAFile = cert.certificateFile
            $0.chatWebhookAttempts = 2
        }
        let alice = try device("alice")
        _ = try alice.call(.chatSend(to: "bob", clientId: "x", text: "x"))
        waitUntil("given up") { notifierState()["failed"] == 1 }
        XCTAssertEqual(notifierState()["retried"], 1, "a failed handshake is retried like any connection error")
        XCTAssertEqual(receiver!.requests.count, 0, "not a byte of the notification was sent")
    }

    /// Notifications to `users` one after another, each waited for at the receiver.
    func notifyInTurn(_ users: [String]) throws {
        let alice = try device("alice")
        for (i, u) in users.enumerated() {
            _ = try alice.call(.chatSend(to: u, clientId: "n\(i)", text: "x"))
            waitUntil("notification \(i + 1) taken") { receiver!.requests.count == i + 1 }
        }
        waitUntil("all sent") { notifierState()["sent"]?.intValue == users.count }
    }

    func testNotificationsShareOneKeptAliveConnection() throws {
        try startWithWebhook()
        try checkOneConnectionCarries(["u1", "u2", "u3", "u4"])
    }

    func testChunkedResponsesAreReadThroughAndKeepTheConnection() throws {
        try startWithWebhook(chunked: true)
        try checkOneConnectionCarries(["u1", "u2", "u3"])
    }

    func checkOneConnectionCarries(_ users: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        try notifyInTurn(users)
        let got = receiver!.requests
        XCTAssertEqual(got.map { $0["verified"] }, users.map { _ in true }, file: file, line: line)
        XCTAssertEqual(Set(got.compactMap { $0["port"]?.intValue }).count, 1, "one connection carried them all", file: file, line: line)
        let s = notifierState()
        XCTAssertEqual(s["connections"], 1, file: file, line: line)
        XCTAssertEqual(s["idle"], 1, "kept for the next", file: file, line: line)
        XCTAssertEqual(s["retried"], 0, file: file, line: line)
        XCTAssertEqual(s["resolves"], 0, "an IP literal is not looked up", file: file, line: line)
    }

    func testAReceiverClosingTheConnectionIsSurvived() throws {
        // The second response says Connection: close; after the third the receiver closes without saying so.
        try startWithWebhook(close: [2], drop: [3])
        try notifyInTurn(["u1", "u2", "u3", "u4", "u5"])
        let got = receiver!.requests
        let ports = got.compactMap { $0["port"]?.intValue }
        XCTAssertEqual(ports.count, 5)
        XCTAssertEqual(ports[0], ports[1])
        XCTAssertNotEqual(ports[2], ports[1], "a new connection after Connection: close")
        XCTAssertNotEqual(ports[3], ports[2], "a new connection after the receiver closed")
        XCTAssertEqual(ports[3], ports[4])
        XCTAssertEqual(got.map { $0["body"]?["attempt"] }, [1, 1, 1, 1, 1], "no attempt lost to a closed connection")
        let s = notifierState()
        XCTAssertEqual(s["connections"], 3)
        XCTAssertEqual(s["retried"], 0)
        XCTAssertEqual(s["failed"], 0)
    }

    func testARequestOnAConnectionTheReceiverClosesUnansweredGoesAgainOnANewOneWithoutCountingAnAttempt() throws {
        // The receiver reads the second request on the kept-alive connection and closes it without a word.
        try startWithWebhook(reset: [2])
        try notifyInTurn(["u1", "u2", "u3"])
        let got = receiver!.requests
        let ports = got.compactMap { $0["port"]?.intValue }
        XCTAssertEqual(got.map { $0["body"]?["user"] }, ["u1", "u2", "u3"])
        XCTAssertEqual(got.map { $0["body"]?["attempt"] }, [1, 1, 1])
        XCTAssertNotEqual(ports[1], ports[0], "sent again on a new connection")
        XCTAssertEqual(ports[2], ports[1])
        let s = notifierState()
        XCTAssertEqual(s["connections"], 2)
        XCTAssertEqual(s["retried"], 0)
    }

    func testWithoutKeepAliveEachRequestHasItsConnectionAndANameIsResolvedOnce() throws {
        // A host name that resolves to the receiver's loopback address (this machine's own name, from /etc/hosts).
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count)
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let a = try? WebhookNotifier.resolve(WebhookURL("http://\(host):1/")), a.ipString.hasPrefix("127.") else {
            throw XCTSkip("this machine's name (\(host)) does not resolve to a loopback address")
        }
        try startWithWebhook { c in
            c.chatWebhookURL = c.chatWebhookURL.replacingOccurrences(of: "127.0.0.1", with: host)
            c.chatWebhookIdleMs = 0
        }
        try notifyInTurn(["u1", "u2", "u3"])
        XCTAssertEqual(Set(receiver!.requests.compactMap { $0["port"]?.intValue }).count, 3)
        let s = notifierState()
        XCTAssertEqual(s["connections"], 3)
        XCTAssertEqual(s["idle"], 0)
        XCTAssertEqual(s["resolves"], 1, "the address is reused within chat-webhook-resolve-ttl-ms")
    }

    func testTheAdminRouteShowsTheNotifier() throws {
        try startWithWebhook()
        let adm = server.token("ops", room: nil, admin: true)
        let r = try runTool("curl", ["-s", "-H", "Authorization: Bearer \(adm)", server.httpURL + "/admin/chat/notifier"])
        let state = try JSONValue.parse(r.out)
        XCTAssertEqual(state["configured"], true)
        XCTAssertEqual(state["url"]?.stringValue, "http://127.0.0.1:\(receiver!.port)", "no path: it may carry a token")
        XCTAssertEqual(state["queued"], 0)
        let anon = try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", server.httpURL + "/admin/chat/notifier"])
        XCTAssertEqual(anon.out, "401")
    }
}

/// The notifier's queue alone: collapse, the per-user interval, priority, the bound, backoff.
final class NotificationQueueTests: XCTestCase {
    func n(_ user: String, group: Bool = false, sender: String = "s") -> ChatNotification {
        ChatNotification(user: user, conversation: 1, sender: sender, group: group)
    }

    func testCollapsePriorityAndOrder() {
        var q = NotificationQueue(capacity: 10, intervalNanoseconds: 0, backoffNanoseconds: 1)
        XCTAssertEqual(q.add(n("a", group: true), now: 0), .queued)
        XCTAssertEqual(q.add(n("b", group: true), now: 0), .queued)
        XCTAssertEqual(q.add(n("c"), now: 0), .queued)
        XCTAssertEqual(q.add(n("a", sender: "t"), now: 0), .collapsed, "a's 1:1 message joins its waiting group one")
        let first = q.next(now: 0)!, second = q.next(now: 0)!, third = q.next(now: 0)!
        // a became high (the higher priority wins) and was queued before c: a, c, then b.
        XCTAssertEqual([first, second, third].map(\.notification.user), ["a", "c", "b"])
        XCTAssertEqual(first.notification.count, 2)
        XCTAssertEqual(first.notification.sender, "t", "the newest message's details")
        XCTAssertEqual(first.attempts, 1)
        XCTAssertNil(q.next(now: 0))
    }

    func testOneNotificationPerUserPerInterval() {
        var q = NotificationQueue(capacity: 10, intervalNanoseconds: 1000, backoffNanoseconds: 1)
        _ = q.add(n("a"), now: 0)
        XCTAssertNotNil(q.next(now: 0))
        XCTAssertEqual(q.add(n("a"), now: 10), .queued)
        XCTAssertEqual(q.add(n("a"), now: 20), .collapsed)
        XCTAssertNil(q.next(now: 999), "not before the interval since the last one")
        XCTAssertEqual(q.nextDue, 1000)
        XCTAssertEqual(q.next(now: 1000)?.notification.count, 2)
    }

    func testBoundAndBackoff() {
        var q = NotificationQueue(capacity: 1, intervalNanoseconds: 0, backoffNanoseconds: 100, maxBackoffNanoseconds: 1000)
        XCTAssertEqual(q.add(n("a"), now: 0), .queued)
        XCTAssertEqual(q.add(n("b"), now: 0), .dropped)
        XCTAssertEqual((1...6).map { q.backoff(afterAttempts: $0) }, [100, 200, 400, 800, 1000, 1000])
        var e = q.next(now: 0)!
        XCTAssertEqual(q.retry(e, now: 0), .queued)
        XCTAssertNil(q.next(now: 99))
        e = q.next(now: 100)!
        XCTAssertEqual(e.attempts, 2)
        XCTAssertEqual(q.add(n("a"), now: 100), .queued, "a new message while the retry is in flight")
        XCTAssertEqual(q.retry(e, now: 100), .collapsed, "the retry joins it")
        XCTAssertEqual(q.nextDue, 300)
        let merged = q.next(now: 300)!
        XCTAssertEqual(merged.notification.count, 2)
        XCTAssertEqual(merged.attempts, 3)
    }

    func testWebhookURLAndSignature() throws {
        let u = try WebhookURL("https://hooks.example.com/parley?x=1")
        XCTAssertEqual([u.host, u.target, u.hostHeader], ["hooks.example.com", "/parley?x=1", "hooks.example.com"])
        XCTAssertEqual(u.port, 443)
        XCTAssertEqual(try WebhookURL("http://[::1]:8080").hostHeader, "[::1]:8080")
        XCTAssertEqual(try WebhookURL("http://10.0.0.1").target, "/")
        XCTAssertThrowsError(try WebhookURL("ftp://x"))
        XCTAssertThrowsError(try WebhookURL("http://user:pw@x/"))
        // The example of docs/protocol.md "Offline notifications", as python3's hmac computes it.
        XCTAssertEqual(WebhookNotifier.signature(secret: Array("secret-key".utf8), timestamp: "1700000000", body: Array(#"{"a":1}"#.utf8)),
                       "7311449d99aa882d3471459eab2f09da94fb15f2c1c678f4367531554cf36a96")
        XCTAssertEqual(WebhookNotifier.cut("héllo", toBytes: 2), "h")
    }
}
