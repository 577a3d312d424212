import XCTest
import Foundation
import Synchronization
import ParleyCore
import ParleyIO
import ParleyTestSupport
@testable import ParleyProtocol
@testable import ParleyAuth

/// "Sent" survives SIGKILL: a real `parley serve` child process acks
/// `chat.send` for messages to an offline user, is killed with SIGKILL,
/// and started again on the same data directory; the user then connects and
/// receives every acknowledged message exactly once, in order.
final class ChatDurabilityTests: XCTestCase {
    var group: EventLoopGroup!
    var serve: Process?
    let dataDir = tempDir("chat-durability")

    override func setUpWithError() throws {
        group = try EventLoopGroup(numberOfThreads: 1, logger: quietLogger)
    }

    override func tearDown() {
        if let p = serve, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: dataDir)
    }

    /// Starts `parley serve` on `dataDir` with chat's limits opened up for a burst; returns its port.
    func startServer() throws -> UInt16 {
        let (p, lines, _) = try startServe(dataDir: dataDir, extra: [
            "--chat-rate", "1000000", "--chat-burst", "1000000",
            "--signalling-rate", "100000", "--signalling-burst", "100000",
        ])
        serve = p
        guard let line = lines.first(where: { $0.hasPrefix("listening http ") }), let port = UInt16(line.split(separator: ":").last!) else {
            throw XCTSkip("parley serve did not start: \(lines)")
        }
        return port
    }

    func kill9() {
        guard let p = serve else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
    }

    func connect(_ port: UInt16, user: String) throws -> BlockingSignallingClient {
        let secret = try ServerSecret.loadOrCreate(dataDir: dataDir)
        let now = Int64(Date().timeIntervalSince1970)
        let token = JWT.sign(TokenClaims(subject: user, room: nil, issuedAt: now - 10, expiresAt: now + 600), secret: secret)
        let c = try BlockingSignallingClient.connect(loop: group.next(), address: SocketAddress(ip: "127.0.0.1", port: port)!, host: "127.0.0.1")
        try c.call(.auth(token: token, room: nil, device: "phone"))
        return c
    }

    /// Receives bob's sync to its end, acking each page; returns (seq, text) in arrival order.
    func receiveSync(_ bob: BlockingSignallingClient) throws -> [(seq: Int, text: String)] {
        var got: [(seq: Int, text: String)] = []
        while true {
            let e = try bob.nextEvent(timeout: 60)
            if e["type"] == "sync.done" { break }
            guard e["type"] == "chat.message", let seq = e["seq"]?.intValue, let text = e["text"]?.stringValue else { continue }
            got.append((seq, text))
            if e["ack"] == true {
                try bob.call(.chatAck(conversation: Int64(e["conversation"]!.intValue!), seq: Int64(seq)), timeout: 30)
            }
        }
        return got
    }

    func testTenThousandSentMessagesSurviveSIGKILLAndArriveOnceInOrder() throws {
        let port = try startServer()
        let alice = try connect(port, user: "alice")
        let burst = Burst(total: 10_000)
        try alice.onLoop { burst.start($0) }
        waitUntil("10,000 sent acks", timeout: 300) { burst.acked.withLock { $0.count } == 10_000 || !burst.failures.withLock { $0.isEmpty } }
        XCTAssertEqual(burst.failures.withLock { $0 }, [])
        kill9()

        let bob = try connect(try startServer(), user: "bob")
        let got = try receiveSync(bob)
        XCTAssertEqual(got.count, 10_000)
        XCTAssertEqual(got.map(\.seq), Array(1...10_000), "every message once, in order")
        let acked = burst.acked.withLock { $0 }
        let mismatched = got.filter { acked[$0.seq] != $0.text }
        XCTAssertEqual(mismatched.count, 0, "seq → text as acked: \(mismatched.prefix(3))")
    }

    func testAKillMidBurstLosesNoAcknowledgedMessageAndRepeatsNone() throws {
        let port = try startServer()
        let alice = try connect(port, user: "alice")
        let burst = Burst(total: 50_000)
        try alice.onLoop { burst.start($0) }
        waitUntil("3,000 sent acks", timeout: 300) { burst.acked.withLock { $0.count } >= 3_000 || !burst.failures.withLock { $0.isEmpty } }
        kill9()  // requests are still in flight
        let acked = burst.acked.withLock { $0 }
        XCTAssertLessThan(acked.count, 50_000, "the kill came mid-burst")

        let port2 = try startServer()
        let bob = try connect(port2, user: "bob")
        let got = try receiveSync(bob)
        let seqs = got.map(\.seq)
        XCTAssertEqual(seqs, Array(1...max(1, got.count)), "in order, none twice, no gaps")
        let received = Dictionary(got.map { ($0.seq, $0.text) }, uniquingKeysWith: { a, _ in a })
        let lost = acked.filter { received[$0.key] != $0.value }
        XCTAssertEqual(lost.count, 0, "\(lost.count) of \(acked.count) acknowledged messages lost")
        XCTAssertGreaterThanOrEqual(got.count, acked.count)
        // The conversation's last seq is its newest message's (conversations.last_seq is not written per
        // message): after the kill, the next message follows the last one stored, none reused, none skipped.
        let again = try connect(port2, user: "alice").call(.chatSend(to: "bob", clientId: "after the kill", text: "after"))
        XCTAssertEqual(again["seq"]?.intValue, got.count + 1)
        let first = got.first { $0.text == "message 0" }?.seq
        XCTAssertEqual(try connect(port2, user: "alice").call(.chatSend(to: "bob", clientId: "m0", text: "message 0"))["seq"]?.intValue, first,
                       "a client id sent before the kill is still known: the same message, not a new one")
    }
}

/// Sends `chat.send` to bob as fast as acks come back, `window` at a time,
/// on the client's loop; records each ack (seq → text).
final class Burst: @unchecked Sendable {
    let total: Int
    let window = 256
    /// Loop only.
    private var next = 0
    let acked = Mutex<[Int: String]>([:])
    let failures = Mutex<[String]>([])

    init(total: Int) { self.total = total }

    func start(_ c: SignallingClient) { for _ in 0..<window { sendNext(c) } }

    private func sendNext(_ c: SignallingClient) {
        guard next < total else { return }
        let i = next
        next += 1
        let text = "message \(i)"
        c.request(.chatSend(to: "bob", clientId: "m\(i)", text: text), timeout: .seconds(120)) { [self] r in
            switch r {
            case .success(let v):
                if let seq = v["seq"]?.intValue { acked.withLock { $0[seq] = text } } else { failures.withLock { $0.append("\(v)") } }
                sendNext(c)
            case .failure(let e):
                failures.withLock { $0.append("\(e)") }
            }
        }
    }
}
