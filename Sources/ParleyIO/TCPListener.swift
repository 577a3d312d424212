import Glibc
import CLinux
import ParleyCore

/// A listening TCP socket on a loop. Accepts with `accept4` until the kernel
/// says would-block and hands each socket to `onAccept` (on the listener's
/// loop), which must adopt or close it. Loop-bound.
public final class TCPListener: EventLoopIOHandler, @unchecked Sendable {
    /// The listener's loop.
    public let loop: EventLoop
    /// The bound address (real port when bound to port 0).
    public let localAddress: SocketAddress
    private let fd: Int32
    private var registration: IORegistration?
    private var onAccept: ((AcceptedSocket) -> Void)?
    private var pauseTimer: TimerHandle?
    private let metrics = TCPMetrics.shared

    /// Binds and listens. `SO_REUSEADDR` is always set; `reusePort` lets
    /// several loops listen on one port; `ipv6Only` false makes a listener
    /// on `::` take IPv4 too (as IPv4-mapped addresses). Loop only.
    public init(loop: EventLoop, bindTo address: SocketAddress, backlog: Int32 = 4096, reusePort: Bool = false,
                ipv6Only: Bool = true, onAccept: @escaping (AcceptedSocket) -> Void) throws(SystemError) {
        loop.preconditionInLoop()
        self.loop = loop
        self.onAccept = onAccept
        let fd = try SocketOps.boundSocket(address, type: Int32(SOCK_STREAM.rawValue), reuseAddress: true,
                                           reusePort: reusePort, ipv6Only: ipv6Only)
        self.fd = fd
        do {
            try syscall("listen") { Glibc.listen(fd, backlog) }
            localAddress = try SocketOps.localAddress(fd)
            registration = try loop.register(fd: fd, interest: .readable, handler: self)
        } catch {
            closeFD(fd)
            throw error
        }
    }

    /// Convenience: accepted connections are adopted on the listener's loop
    /// (or round robin over `group` when given) with `makeHandler`.
    public convenience init(loop: EventLoop, bindTo address: SocketAddress, backlog: Int32 = 4096,
                            options: TCPOptions = TCPOptions(), tls: TLSContext? = nil,
                            makeHandler: @escaping @Sendable () -> any TCPConnectionHandler) throws(SystemError) {
        try self.init(loop: loop, bindTo: address, backlog: backlog) { sock in
            _ = try? TCPConnection.adopt(sock, on: loop, options: options, tls: tls, handler: makeHandler())
        }
    }

    deinit { precondition(registration == nil, "TCPListener deallocated while open") }

    /// True until ``close()``.
    public var isOpen: Bool { registration != nil }

    /// Stops listening and closes the socket. Idempotent. Loop only.
    public func close() {
        loop.assertInLoop()
        guard let reg = registration else { return }
        if let t = pauseTimer { loop.cancelTimer(t); pauseTimer = nil }
        loop.deregister(reg)
        registration = nil
        closeFD(fd)
        onAccept = nil
    }

    public func loopIsShuttingDown(graceful: Bool) { close() }

    public func handleIO(_ events: IOEvents) {
        var storage = sockaddr_storage()
        while registration != nil, let onAccept {
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let r: IOResult<Int32>
            do {
                r = try withUnsafeMutablePointer(to: &storage) { p throws(SystemError) in
                    try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SystemError) in
                        try syscallMayBlock("accept4") { parley_accept4_nonblock(fd, sa, &len) }
                    }
                }
            } catch {
                metrics.acceptErrors.inc()
                if error.errno == ECONNABORTED || error.errno == EPROTO { continue }
                // EMFILE/ENFILE/ENOBUFS: stop for 100 ms instead of spinning on a
                // level-triggered event we cannot consume.
                loop.logger.warn("accept failed; pausing listener", ["error": .string(error.description)])
                if let reg = registration {
                    try? loop.modify(reg, interest: [])
                    pauseTimer = loop.scheduleTimer(after: .milliseconds(100)) { [weak self] in
                        guard let self, let reg = self.registration else { return }
                        self.pauseTimer = nil
                        try? self.loop.modify(reg, interest: .readable)
                    }
                }
                return
            }
            guard case .processed(let cfd) = r else { return }
            metrics.accepted.inc()
            let remote = SocketAddress(storage, length: Int(len)) ?? .ipv4Any(port: 0)
            onAccept(AcceptedSocket(fd: cfd, remoteAddress: remote))
        }
    }
}
