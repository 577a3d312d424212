import Glibc
import CLinux
import ParleyCore

/// One received datagram: a view into the socket's preallocated buffers.
/// `bytes` is valid only during the ``UDPSocketHandler`` callback.
public struct UDPDatagram {
    /// The payload.
    public let bytes: UnsafeRawBufferPointer
    /// Where it came from.
    public let source: SocketAddress

    @usableFromInline init(bytes: UnsafeRawBufferPointer, source: SocketAddress) {
        self.bytes = bytes; self.source = source
    }
}

/// The datagrams one `recvmmsg` returned, in arrival order. A view (no
/// copies, no allocation) valid only during the handler callback.
public struct UDPReceiveBatch: RandomAccessCollection {
    @usableFromInline let msgs: UnsafeMutablePointer<parley_mmsghdr>
    public let count: Int

    init(msgs: UnsafeMutablePointer<parley_mmsghdr>, count: Int) {
        self.msgs = msgs; self.count = count
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    /// The `i`-th datagram; the source address is decoded from the kernel's
    /// `sockaddr` on access.
    @inlinable public subscript(i: Int) -> UDPDatagram {
        precondition(i >= 0 && i < count)
        let m = msgs[i]
        let base = UnsafeRawPointer(m.msg_hdr.msg_iov.pointee.iov_base!)
        return UDPDatagram(bytes: UnsafeRawBufferPointer(start: base, count: Int(m.msg_len)),
                           source: SocketAddress(m.msg_hdr.msg_name!, length: Int(m.msg_hdr.msg_namelen))
                               ?? SocketAddress(ipv4NetworkOrder: 0, port: 0))
    }

    /// When the kernel queued datagram `i` on the socket (`CLOCK_REALTIME`
    /// ns, from `SO_TIMESTAMPNS`), or 0 without receive timestamps
    /// (``UDPSocket/setReceiveTimestamps(_:)``).
    public func receivedAtNanoseconds(_ i: Int) -> Int64 {
        precondition(i >= 0 && i < count)
        return parley_receive_timestamp_ns(&msgs[i].msg_hdr)
    }

    /// Payload of datagram `i` without decoding the address.
    @inlinable public func bytes(at i: Int) -> UnsafeRawBufferPointer {
        let m = msgs[i]
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(m.msg_hdr.msg_iov.pointee.iov_base!), count: Int(m.msg_len))
    }
}

/// Receives datagram batches from a ``UDPSocket``. Called on the socket's loop.
public protocol UDPSocketHandler: AnyObject {
    /// A batch arrived. Views are valid only during this call; use
    /// `socket.sendBatch` to answer (flush before returning or later).
    func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch)
    /// A receive error other than would-block (e.g. ICMP-caused `ECONNREFUSED`).
    /// Default: ignored (already counted in metrics).
    func udpSocket(_ socket: UDPSocket, didFail error: SystemError)
}

extension UDPSocketHandler {
    public func udpSocket(_ socket: UDPSocket, didFail error: SystemError) {}
}

/// Fixed arrays of mmsghdr + iovec + sockaddr_storage + payload buffers, set
/// up once; `recvmmsg`/`sendmmsg` reuse them forever.
final class MMsgArrays {
    let capacity: Int
    let slotSize: Int
    let msgs: UnsafeMutablePointer<parley_mmsghdr>
    let iovs: UnsafeMutablePointer<iovec>
    let names: UnsafeMutablePointer<sockaddr_storage>
    let buffers: UnsafeMutableRawPointer
    /// Per-message control space for receive timestamps (``UDPSocket/setReceiveTimestamps(_:)``).
    let controlSpace: Int
    let controls: UnsafeMutableRawPointer

    init(capacity: Int, slotSize: Int) {
        self.capacity = capacity
        self.slotSize = slotSize
        controlSpace = parley_receive_timestamp_space()
        controls = .allocate(byteCount: capacity * controlSpace, alignment: 16)
        msgs = .allocate(capacity: capacity)
        iovs = .allocate(capacity: capacity)
        names = .allocate(capacity: capacity)
        buffers = .allocate(byteCount: capacity * slotSize, alignment: 64)
        names.initialize(repeating: sockaddr_storage(), count: capacity)
        for i in 0..<capacity {
            iovs[i] = iovec(iov_base: buffers + i * slotSize, iov_len: slotSize)
            var h = msghdr()
            h.msg_name = UnsafeMutableRawPointer(names + i)
            h.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            h.msg_iov = iovs + i
            h.msg_iovlen = 1
            msgs[i] = parley_mmsghdr(msg_hdr: h, msg_len: 0)
        }
    }

    deinit {
        msgs.deallocate(); iovs.deallocate(); names.deallocate(); buffers.deallocate(); controls.deallocate()
    }
}

/// A UDP socket on an ``EventLoop``: batched receive with `recvmmsg` into
/// preallocated buffers, batched send with `sendmmsg` through ``sendBatch``.
/// Loop-bound: create, use and close it on its loop's thread.
public final class UDPSocket: EventLoopIOHandler, @unchecked Sendable {
    /// Socket and batching options.
    public struct Options: Sendable {
        /// `SO_REUSEPORT`: several sockets (loops) may bind the same port.
        public var reusePort = false
        /// Requested `SO_RCVBUF` (tries `SO_RCVBUFFORCE` first). 4 MiB default:
        /// receive-buffer drops are the usual failure at high packet rates.
        public var receiveBufferSize = 4 << 20
        /// Requested `SO_SNDBUF` (tries `SO_SNDBUFFORCE` first).
        public var sendBufferSize = 4 << 20
        /// Datagrams per `recvmmsg`/`sendmmsg`.
        public var batchSize = 64
        /// Buffer size per datagram; longer datagrams are dropped as truncated.
        public var maxDatagramSize = 2048
        /// For an IPv6 bind: refuse IPv4-mapped traffic (separate v4 socket).
        public var ipv6Only = true
        /// `recvmmsg` calls per readiness event before yielding to other fds.
        public var maxBatchesPerWakeup = 16
        /// Datagrams per send batch (the most one flush sends in one
        /// `sendmmsg`); nil: `batchSize`. A fan-out relay wants room for a
        /// whole receive batch times its fan-out so GSO runs get long.
        public var sendBatchSize: Int? = nil
        /// UDP GSO (`UDP_SEGMENT`) on flush when the kernel supports it.
        public var gso = true
        /// Where counters are registered.
        public var metrics: MetricsRegistry = .shared
        public init() {}
    }

    struct Metrics {
        let received: Counter, sent: Counter, truncated: Counter, receiveError: Counter
        let sendWouldBlock: Counter, sendError: Counter, sendOversize: Counter
        let gsoDisabled: Counter, gsoCoalesced: Counter
        init(_ r: MetricsRegistry) {
            gsoDisabled = r.counter("parley_udp_gso_disabled_total",
                                    help: "Sockets whose UDP GSO was turned off after the kernel refused a segmented send.")
            gsoCoalesced = r.counter("parley_udp_gso_saved_messages_total",
                                     help: "Datagrams sent inside a UDP GSO message beyond its first (messages saved).")
            received = r.counter("parley_udp_received_packets_total", help: "UDP datagrams received.")
            sent = r.counter("parley_udp_sent_packets_total", help: "UDP datagrams sent.")
            let help = "UDP datagrams dropped by the socket layer, by reason."
            truncated = r.counter("parley_udp_dropped_total", help: help, labels: [("reason", "truncated")])
            receiveError = r.counter("parley_udp_dropped_total", help: help, labels: [("reason", "receive_error")])
            sendWouldBlock = r.counter("parley_udp_dropped_total", help: help, labels: [("reason", "send_would_block")])
            sendError = r.counter("parley_udp_dropped_total", help: help, labels: [("reason", "send_error")])
            sendOversize = r.counter("parley_udp_dropped_total", help: help, labels: [("reason", "send_oversize")])
        }
    }

    /// The loop this socket lives on.
    public let loop: EventLoop
    /// The bound address (with the real port when bound to port 0).
    public let localAddress: SocketAddress
    /// Effective `SO_RCVBUF` / `SO_SNDBUF` as reported by the kernel.
    public let receiveBufferSize: Int, sendBufferSize: Int
    /// The handler; released on ``close()``.
    public private(set) var handler: (any UDPSocketHandler)?
    /// The reusable outgoing batch (loop only).
    public let sendBatch: UDPSendBatch
    let fd: Int32
    let metrics: Metrics
    private let recv: MMsgArrays
    private let options: Options
    private var registration: IORegistration?
    /// True while datagrams carry the kernel's receive time.
    public private(set) var receiveTimestamps = false

    /// Turns kernel receive timestamps (`SO_TIMESTAMPNS`) on or off; with
    /// them, ``UDPReceiveBatch/receivedAtNanoseconds(_:)`` says when each
    /// datagram was queued on the socket. Off by default: the kernel then
    /// skips a control message per datagram. Loop only.
    public func setReceiveTimestamps(_ on: Bool) throws(SystemError) {
        loop.preconditionInLoop()
        try syscall("setsockopt(SO_TIMESTAMPNS)") { parley_set_receive_timestamps(fd, on ? 1 : 0) }
        receiveTimestamps = on
        if !on { for i in 0..<recv.capacity { recv.msgs[i].msg_hdr.msg_controllen = 0 } }
    }

    /// Binds a UDP socket to `address` and starts receiving. Loop only.
    public init(loop: EventLoop, bindTo address: SocketAddress, options: Options = Options(),
                handler: any UDPSocketHandler) throws(SystemError) {
        loop.preconditionInLoop()
        precondition(options.batchSize > 0 && options.maxDatagramSize > 0 && (options.sendBatchSize ?? 1) > 0)
        self.loop = loop
        self.options = options
        self.handler = handler
        metrics = Metrics(options.metrics)
        let fd = try SocketOps.boundSocket(address, type: Int32(SOCK_DGRAM.rawValue), reuseAddress: false,
                                           reusePort: options.reusePort, ipv6Only: options.ipv6Only)
        self.fd = fd
        receiveBufferSize = SocketOps.setBuffer(fd, receive: true, bytes: options.receiveBufferSize)
        sendBufferSize = SocketOps.setBuffer(fd, receive: false, bytes: options.sendBufferSize)
        do {
            localAddress = try SocketOps.localAddress(fd)
        } catch {
            closeFD(fd)
            throw error
        }
        recv = MMsgArrays(capacity: options.batchSize, slotSize: options.maxDatagramSize)
        // GSO needs UDP_SEGMENT (Linux 4.18+): probe once with getsockopt.
        let gso = options.gso && SocketOps.getInt(fd, Int32(IPPROTO_UDP), parley_udp_segment()) >= 0
        sendBatch = UDPSendBatch(fd: fd, metrics: metrics, capacity: options.sendBatchSize ?? options.batchSize,
                                 slotSize: options.maxDatagramSize, gso: gso)
        do {
            registration = try loop.register(fd: fd, interest: .readable, handler: self)
        } catch {
            closeFD(fd)
            throw error
        }
    }

    deinit {
        precondition(registration == nil, "UDPSocket deallocated without close()")
    }

    /// True until ``close()``.
    public var isOpen: Bool { registration != nil }

    /// Sends one datagram now (`sendto`). Returns false if it was dropped
    /// (would-block or error; counted). Prefer ``sendBatch`` for several.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) -> Bool {
        loop.assertInLoop()
        guard registration != nil else { return false }
        var storage = sockaddr_storage()
        let r: IOResult<Int>
        do {
            r = try withUnsafeMutableBytes(of: &storage) { raw throws(SystemError) in
                let len = destination.write(to: raw.baseAddress!)
                let sa = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
                return try syscallMayBlock("sendto") { Glibc.sendto(fd, bytes.baseAddress, bytes.count, 0, sa, len) }
            }
        } catch {
            metrics.sendError.inc()
            return false
        }
        guard case .processed = r else { metrics.sendWouldBlock.inc(); return false }
        metrics.sent.inc()
        return true
    }

    /// Flushes the send batch, stops receiving, closes the fd and releases the
    /// handler. Idempotent. Loop only.
    public func close() {
        loop.assertInLoop()
        guard let reg = registration else { return }
        sendBatch.flush()
        sendBatch.isOpen = false
        loop.deregister(reg)
        registration = nil
        closeFD(fd)
        handler = nil
    }

    public func loopIsShuttingDown(graceful: Bool) { close() }

    public func handleIO(_ events: IOEvents) {
        guard events.contains(.readable) || events.contains(.error) else { return }
        let batch = options.batchSize
        let nameLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        for _ in 0..<options.maxBatchesPerWakeup {
            guard registration != nil, let handler else { return }
            for i in 0..<batch { recv.msgs[i].msg_hdr.msg_namelen = nameLen }
            if receiveTimestamps {
                // The kernel shrinks msg_controllen to what it wrote; give each slot its space back.
                for i in 0..<batch {
                    recv.msgs[i].msg_hdr.msg_control = recv.controls + i * recv.controlSpace
                    recv.msgs[i].msg_hdr.msg_controllen = recv.controlSpace
                }
            }
            let r: IOResult<Int32>
            do {
                r = try syscallMayBlock("recvmmsg") { parley_recvmmsg(fd, recv.msgs, UInt32(batch), Int32(MSG_DONTWAIT)) }
            } catch {
                metrics.receiveError.inc()
                handler.udpSocket(self, didFail: error)
                continue // e.g. ECONNREFUSED from an earlier send: the queue may still hold data
            }
            guard case .processed(let got) = r, got > 0 else { return }
            var n = Int(got)
            // Drop truncated datagrams by moving valid headers to the front
            // (each header carries its own buffer and name pointers).
            var truncated = 0
            var w = 0
            for i in 0..<n {
                if recv.msgs[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 { truncated += 1; continue }
                if w != i { swap(&recv.msgs[w], &recv.msgs[i]) }
                w += 1
            }
            if truncated > 0 { metrics.truncated.inc(truncated); n = w }
            metrics.received.inc(n)
            if n > 0 { handler.udpSocket(self, didReceive: UDPReceiveBatch(msgs: recv.msgs, count: n)) }
            if Int(got) < batch { return } // queue drained
        }
    }
}
