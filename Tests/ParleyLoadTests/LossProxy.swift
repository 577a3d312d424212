import Foundation

/// A UDP forwarding proxy for tests: clients send to `port`; each client
/// gets an upstream socket of its own towards `target` (so the server sees
/// one source per client, as without the proxy) and answers come back the
/// same way. Of the RTP packets going upstream it drops every `dropEvery`-th
/// (STUN and RTCP pass), a known fraction of loss on the path.
final class LossProxy: @unchecked Sendable {
    let port: UInt16
    private let listen: Int32
    private let target: sockaddr_in
    private let dropEvery: Int
    private var upstream: [Int32] = []
    private var clients: [Int32: sockaddr_in] = [:]
    private var byClient: [UInt64: Int32] = [:]
    private let lock = NSLock()
    private var running = true
    private var thread: Thread?
    private(set) var forwardedRTP = 0
    private(set) var droppedRTP = 0

    init(targetPort: UInt16, dropEvery: Int) {
        self.dropEvery = dropEvery
        let fd = Self.udpSocket()
        listen = fd
        var t = sockaddr_in()
        t.sin_family = sa_family_t(AF_INET)
        t.sin_port = targetPort.bigEndian
        t.sin_addr.s_addr = inet_addr("127.0.0.1")
        target = t
        var a = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: a.sin_port)
    }

    func start() {
        let t = Thread { [unowned self] in self.run() }
        thread = t
        t.start()
    }

    static func udpSocket() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    var counts: (forwarded: Int, dropped: Int) { lock.withLock { (forwardedRTP, droppedRTP) } }

    func stop() {
        lock.withLock { running = false }
        while thread?.isFinished == false { usleep(1000) }
        close(listen)
        for fd in upstream { close(fd) }
    }

    private func run() {
        var buf = [UInt8](repeating: 0, count: 2048)
        var rtp = 0
        while lock.withLock({ running }) {
            var fds = [pollfd(fd: listen, events: Int16(POLLIN), revents: 0)] + upstream.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 20) > 0 else { continue }
            for p in fds where p.revents & Int16(POLLIN) != 0 {
                var from = sockaddr_in()
                var len = socklen_t(MemoryLayout<sockaddr_in>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(p.fd, &buf, buf.count, Int32(MSG_DONTWAIT), $0, &len) }
                }
                guard n > 0 else { continue }
                if p.fd == listen {
                    let key = UInt64(from.sin_addr.s_addr) << 16 | UInt64(from.sin_port)
                    let up: Int32
                    if let u = byClient[key] { up = u } else {
                        up = Self.udpSocket()
                        byClient[key] = up
                        clients[up] = from
                        upstream.append(up)
                    }
                    // RTP (RFC 7983: first byte 128-191, and not an RTCP packet type).
                    if n >= 12, buf[0] & 0xC0 == 0x80, !(192...223).contains(buf[1]) {
                        rtp += 1
                        if rtp % dropEvery == 0 { lock.withLock { droppedRTP += 1 }; continue }
                        lock.withLock { forwardedRTP += 1 }
                    }
                    var t = target
                    _ = withUnsafePointer(to: &t) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(up, buf, n, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                } else if var client = clients[p.fd] {
                    _ = withUnsafePointer(to: &client) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(listen, buf, n, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                }
            }
        }
    }
}
