import XCTest
import Glibc
import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySTUN
@testable import ParleyRelay
import ParleyTestSupport

/// A media client for tests: a real blocking UDP socket on 127.0.0.1.
final class TestClient {
    let fd: Int32
    let address: SocketAddress

    /// An IPv6 client on [::1]; nil when IPv6 loopback is unavailable.
    init?(ipv6: Bool) {
        precondition(ipv6)
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_addr = in6addr_loopback
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let ok = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Glibc.bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { close(fd); return nil }
        self.fd = fd
        address = SocketAddress(ipv6: a.sin6_addr, port: UInt16(bigEndian: a.sin6_port))
    }

    convenience init() { self.init(port: 0)! }

    /// A client on 127.0.0.1:`port` (0: any); nil when the port is taken.
    init?(port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(fd >= 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        a.sin_port = port.bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Glibc.bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { close(fd); return nil }
        self.fd = fd
        var big: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, socklen_t(4))
        address = SocketAddress(ipv4NetworkOrder: a.sin_addr.s_addr, port: UInt16(bigEndian: a.sin_port))
    }

    /// Two clients on ports P and P + 1 (an RTP tool's media and RTCP ports).
    static func rtpAndRTCPPair() -> (rtp: TestClient, rtcp: TestClient) {
        while true {
            let rtp = TestClient()
            if rtp.address.port < UInt16.max, let rtcp = TestClient(port: rtp.address.port + 1) { return (rtp, rtcp) }
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8], to dest: SocketAddress) {
        let n = bytes.withUnsafeBytes { b in
            dest.withSockAddr { sa, len in sendto(fd, b.baseAddress, b.count, 0, sa, len) }
        }
        precondition(n == bytes.count, "sendto failed: \(errno)")
    }

    /// The next datagram, or nil after `timeout` seconds (a hang guard, not a
    /// timing assertion: callers wait for something that must arrive).
    func receive(timeout: Double = 10) -> [UInt8]? {
        receiveDatagram(fd, timeout: timeout)
    }

    /// A client on another IPv4 loopback address (`127.0.0.2`: a second
    /// source IP for per-source limits), any port; nil if it cannot bind.
    init?(ipv4 ip: String) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var bound = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard fd >= 0, let want = SocketAddress(ip: ip, port: 0), want.withSockAddr({ Glibc.bind(fd, $0, $1) }) == 0,
              withUnsafeMutablePointer(to: &bound, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }) == 0,
              let a = SocketAddress(bound, length: Int(len)) else {
            if fd >= 0 { close(fd) }
            return nil
        }
        self.fd = fd
        address = a
    }

    /// Every datagram already queued, without waiting.
    func drain() -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let d = receive(timeout: 0) { out.append(d) }
        return out
    }

    /// The next datagram that `filter` accepts (others are skipped).
    func receive(timeout: Double = 10, where filter: ([UInt8]) -> Bool) -> [UInt8]? {
        while let d = receive(timeout: timeout) {
            if filter(d) { return d }
        }
        return nil
    }

    /// Sends a Binding request (authenticated when `ufrag` and `password`
    /// are given) and returns the response. With `consent`, a consent check
    /// from the relay that arrives first is answered, as a real client does.
    func bind(to relay: SocketAddress, ufrag: String?, password: String?,
              consent: (ufrag: String, password: String)? = nil) -> [UInt8]? {
        send(bindingRequest(ufrag: ufrag, password: password), to: relay)
        while let d = receive(where: { $0.first.map { $0 < 4 } ?? false }) {
            if let c = consent, answerConsentCheck(d, from: relay, ufrag: c.ufrag, password: c.password) { continue }
            if d.withUnsafeBytes(BindingCheck.reply) != nil { return d }
        }
        return nil
    }

    /// `bind` with a grant's credentials, answering the relay's consent check.
    func bind(to relay: SocketAddress, grant g: ParticipantGrant) -> [UInt8]? {
        bind(to: relay, ufrag: g.ufrag, password: g.password, consent: (g.consentUfrag, g.consentPassword))
    }

    /// A Binding request, authenticated when both are given.
    func bindingRequest(ufrag: String?, password: String?, id: STUNTransactionID = .random()) -> [UInt8] {
        try! BindingCheck.request(transactionID: id, username: ufrag.map { Array("\($0):client".utf8) },
                                  key: password.map { Array($0.utf8) })
    }

    /// If `d` is the relay's consent check for these credentials, answers it
    /// and returns true.
    @discardableResult
    func answerConsentCheck(_ d: [UInt8], from relay: SocketAddress, ufrag: String, password: String) -> Bool {
        var out = [UInt8](repeating: 0, count: 512)
        let n = d.withUnsafeBytes { b in
            out.withUnsafeMutableBytes { o in
                BindingCheck.answer(b, from: STUNAddress(relay), ufrag: Array(ufrag.utf8), key: Array(password.utf8), into: o)
            }
        }
        guard let n else { return false }
        send(Array(out[0..<n]), to: relay)
        return true
    }
}

/// An RTP packet: 12-byte header + payload.
func rtpPacket(ssrc: UInt32, seq: UInt16, timestamp: UInt32 = 0, pt: UInt8 = 96, payload: [UInt8]) -> [UInt8] {
    var b: [UInt8] = [0x80, pt & 0x7f, UInt8(seq >> 8), UInt8(seq & 0xff)]
    for v in [timestamp, ssrc] { b += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
    return b + payload
}

/// A deterministic payload unique to (ssrc, seq).
func payload(ssrc: UInt32, seq: UInt16, size: Int = 160) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: Int(ssrc) &* 31 &+ Int(seq) &* 7 &+ $0) }
}

func encoded<P: RTCPPacketEncodable>(_ p: P) -> [UInt8] { try! p.encoded() }

func isRTCP(_ d: [UInt8]) -> Bool { d.count >= 8 && d[0] >> 6 == 2 && (192...223).contains(d[1]) }
func isRTP(_ d: [UInt8]) -> Bool { d.count >= 12 && d[0] >> 6 == 2 && !(192...223).contains(d[1]) }
func ssrcOf(_ d: [UInt8]) -> UInt32 { UInt32(d[8]) << 24 | UInt32(d[9]) << 16 | UInt32(d[10]) << 8 | UInt32(d[11]) }
func seqOf(_ d: [UInt8]) -> UInt16 { UInt16(d[2]) << 8 | UInt16(d[3]) }

/// A relay on one loop bound to 127.0.0.1:0, with its own metrics registry.
final class RelayFixture {
    let group: EventLoopGroup
    let relay: Relay
    let metrics = MetricsRegistry()
    let events = EventLog()

    init(configure: (inout RelayConfig) -> Void = { _ in }) throws {
        group = try EventLoopGroup(numberOfThreads: 1)
        var c = RelayConfig()
        c.metrics = metrics
        let log = events
        c.onEvent = { log.append($0) }
        configure(&c)
        relay = try Relay(loops: group.loops, mediaAddresses: [.ipv4Loopback(port: 0)], config: c)
    }

    var mediaAddress: SocketAddress { relay.workers[0].localAddress }

    func counter(_ name: String, _ labels: MetricLabels = []) -> Int {
        metrics.counter(name, help: "", labels: labels).current
    }

    private var joined = 0

    /// A participant joined (named p1, p2, … unless `name` is given) that
    /// publishes every track it was granted; it receives nothing until it
    /// subscribes. Not latched.
    func add(_ room: String, _ tracks: [TrackDescription], name: String? = nil, crypto: ParticipantCrypto? = nil) throws -> ParticipantGrant {
        joined += 1
        let name = name ?? "p\(joined)"
        let g = try waitFor { relay.join(room: room, name: name, tracks: tracks, crypto: crypto, completion: $0) }
        for t in g.tracks {
            _ = try waitFor { relay.publish(room: room, name: name, track: t.spec, completion: $0) }
        }
        return g
    }

    /// `add`, subscribed to every track of `receiving` and with `receivedBy`
    /// subscribed to its tracks (before it latches, as a client subscribes
    /// right after its join), then latched through STUN.
    func join(_ room: String, _ tracks: [TrackDescription], crypto: ParticipantCrypto? = nil,
              receiving: [ParticipantGrant] = [], receivedBy: [ParticipantGrant] = []) throws -> (ParticipantGrant, TestClient) {
        let g = try add(room, tracks, crypto: crypto)
        for p in receiving { try subscribe(g, to: p) }
        for s in receivedBy { try subscribe(s, to: g) }
        return (g, latch(g))
    }

    /// A client that latches `g` through STUN with its credentials.
    func latch(_ g: ParticipantGrant) -> TestClient {
        let c = TestClient()
        XCTAssertNotNil(c.bind(to: mediaAddress, grant: g))
        waitUntilLatched(g.room, g.name, c)
        return c
    }

    /// Subscribes `subscriber` to every track of each of `publishers`.
    func subscribe(_ subscriber: ParticipantGrant, to publishers: ParticipantGrant...) throws {
        for p in publishers {
            for t in p.tracks {
                try waitFor { relay.setSubscribed(room: subscriber.room, subscriber: subscriber.name, ssrc: t.ssrc, true, completion: $0) }
            }
        }
    }

    /// A snapshot of `room`.
    func stats(_ room: String) throws -> RoomStats { try waitFor { relay.stats(room: room, completion: $0) } }

    /// Waits until the relay has latched `c`'s address for `name` (the consent
    /// answer is processed on the relay's loop after `bind` returns).
    func waitUntilLatched(_ room: String, _ name: String, _ c: TestClient) {
        waitUntil("\(name) latched at \(c.address)") {
            (try? stats(room).participants.first { $0.name == name }?.address) == c.address.description
        }
    }

    deinit {
        relay.shutdown()
        group.syncShutdownGracefully()
    }
}

final class EventLog: @unchecked Sendable {
    private let lock = NSLockLike()
    private var items: [RelayEvent] = []
    func append(_ e: RelayEvent) { lock.sync { items.append(e) } }
    var all: [RelayEvent] { lock.sync { items } }
}

final class NSLockLike: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func sync<T>(_ body: () -> T) -> T { pthread_mutex_lock(&m); defer { pthread_mutex_unlock(&m) }; return body() }
}

