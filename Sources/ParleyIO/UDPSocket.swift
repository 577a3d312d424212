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

    init(capacity: Int, slotSize: Int) {
        self.capacity = capacity
        self.slotSize = slotSize
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
        msgs.deallocate(); iovs.deallocate(); names.deallocate(); buffers.deallocate()
    }
}

/// A batch of outgoing datagrams for one `sendmmsg`. Owned by a ``UDPSocket``
/// (``UDPSocket/sendBatch``), reused forever: fill it, then ``flush()``.
/// Appending to a full batch flushes first. Loop only. No allocation.
///
/// To fan one packet out to N subscribers in one syscall, `appendNoCopy` the
/// same bytes N times with different destinations, then flush.
public final class UDPSendBatch {
    let arrays: MMsgArrays
    private let fd: Int32
    private let metrics: UDPSocket.Metrics
    /// Cleared when the socket closes; later flushes drop and count.
    var isOpen = true
    /// Datagrams queued and not yet flushed.
    public private(set) var count = 0
    /// Maximum datagrams per `sendmmsg`.
    public var capacity: Int { arrays.capacity }
    /// Largest payload ``append(_:to:)`` / ``append(to:maxLength:_:)`` accept.
    public var maxDatagramSize: Int { arrays.slotSize }

    init(fd: Int32, metrics: UDPSocket.Metrics, capacity: Int, slotSize: Int) {
        self.fd = fd
        self.metrics = metrics
        arrays = MMsgArrays(capacity: capacity, slotSize: slotSize)
    }

    @inline(__always) private func slot(_ to: SocketAddress) -> Int {
        if count == arrays.capacity { flush() }
        let i = count
        arrays.msgs[i].msg_hdr.msg_namelen = to.write(to: UnsafeMutableRawPointer(arrays.names + i))
        count += 1
        return i
    }

    /// Queues a copy of `bytes` for `destination`. Payloads longer than
    /// ``maxDatagramSize`` are dropped and counted.
    public func append(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) {
        guard bytes.count <= arrays.slotSize else { metrics.sendOversize.inc(); return }
        let i = slot(destination)
        let base = arrays.buffers + i * arrays.slotSize
        if bytes.count > 0 { base.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        arrays.iovs[i] = iovec(iov_base: base, iov_len: bytes.count)
    }

    /// Queues `bytes` for `destination` without copying: the memory must stay
    /// valid and unchanged until the next ``flush()`` (e.g. a received
    /// datagram flushed before the receive callback returns).
    public func appendNoCopy(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) {
        let i = slot(destination)
        arrays.iovs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
    }

    /// Queues a datagram written in place: `body` gets the slot's buffer (at
    /// least `maxLength` bytes, at most ``maxDatagramSize``) and returns the
    /// number of bytes it wrote (0 cancels the datagram).
    public func append(to destination: SocketAddress, maxLength: Int? = nil,
                       _ body: (UnsafeMutableRawBufferPointer) -> Int) {
        let i = slot(destination)
        let base = arrays.buffers + i * arrays.slotSize
        let n = body(UnsafeMutableRawBufferPointer(start: base, count: min(maxLength ?? arrays.slotSize, arrays.slotSize)))
        if n <= 0 { count -= 1; return }
        arrays.iovs[i] = iovec(iov_base: base, iov_len: min(n, arrays.slotSize))
    }

    /// Sends everything queued with as few `sendmmsg` calls as possible and
    /// empties the batch. UDP never waits for writability: datagrams the
    /// kernel refuses with would-block are dropped and counted
    /// (`parley_udp_dropped_total{reason="send_would_block"}`); a datagram
    /// failing with another error is skipped and counted as `send_error`.
    /// Returns the number of datagrams the kernel accepted.
    @discardableResult
    public func flush() -> Int {
        let total = count
        guard total > 0 else { return 0 }
        count = 0
        guard isOpen else { metrics.sendError.inc(total); return 0 }
        var done = 0
        var sent = 0
        while done < total {
            let r: IOResult<Int32>
            do {
                r = try syscallMayBlock("sendmmsg") {
                    parley_sendmmsg(fd, arrays.msgs + done, UInt32(total - done), 0)
                }
            } catch {
                metrics.sendError.inc()
                done += 1 // skip the datagram that failed
                continue
            }
            switch r {
            case .processed(let n):
                done += Int(n); sent += Int(n)
            case .wouldBlock:
                metrics.sendWouldBlock.inc(total - done)
                done = total
            }
        }
        metrics.sent.inc(sent)
        return sent
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
        /// Where counters are registered.
        public var metrics: MetricsRegistry = .shared
        public init() {}
    }

    struct Metrics {
        let received: Counter, sent: Counter, truncated: Counter, receiveError: Counter
        let sendWouldBlock: Counter, sendError: Counter, sendOversize: Counter
        init(_ r: MetricsRegistry) {
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

    /// Binds a UDP socket to `address` and starts receiving. Loop only.
    public init(loop: EventLoop, bindTo address: SocketAddress, options: Options = Options(),
                handler: any UDPSocketHandler) throws(SystemError) {
        loop.preconditionInLoop()
        precondition(options.batchSize > 0 && options.maxDatagramSize > 0)
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
        sendBatch = UDPSendBatch(fd: fd, metrics: metrics, capacity: options.batchSize, slotSize: options.maxDatagramSize)
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
