import Glibc
import CLinux
import ParleyCore

/// Why a ``TCPConnection`` closed.
public enum TCPCloseReason: Sendable, Equatable, CustomStringConvertible {
    /// ``TCPConnection/close()`` or ``TCPConnection/abort()`` was called.
    case local
    /// The peer closed (EOF without half-close, or both halves done).
    case peer
    /// No bytes moved for ``TCPOptions/idleTimeout``.
    case idleTimeout
    /// The TLS handshake did not finish within ``TCPOptions/handshakeTimeout``.
    case handshakeTimeout
    /// The peer did not read: a write found more than
    /// ``TCPOptions/maxQueuedWriteBytes`` already queued.
    case writeQueueFull
    /// The event loop shut down.
    case shutdown
    /// The outbound connect failed.
    case connectFailed(SystemError)
    /// A socket error (`ECONNRESET`, `EPIPE`, ...).
    case error(SystemError)
    /// The TLS layer failed (handshake or record error); the text is OpenSSL's.
    case tls(String)

    public var description: String {
        switch self {
        case .local: return "local"
        case .peer: return "peer"
        case .idleTimeout: return "idle timeout"
        case .handshakeTimeout: return "TLS handshake timeout"
        case .writeQueueFull: return "write queue full"
        case .shutdown: return "shutdown"
        case .connectFailed(let e): return "connect failed: \(e)"
        case .error(let e): return "error: \(e)"
        case .tls(let s): return "tls: \(s)"
        }
    }
}

/// Options for TCP connections (accepted or outbound).
public struct TCPOptions: Sendable {
    /// `TCP_NODELAY` (on: we batch writes ourselves).
    public var noDelay = true
    /// `SO_SNDBUF` / `SO_RCVBUF` if set (nil: kernel autotuning).
    public var sendBufferSize: Int? = nil
    public var receiveBufferSize: Int? = nil
    /// Pending write bytes at which the connection stops reading and reports
    /// not-writable; it resumes below ``lowWaterMark``.
    public var highWaterMark = 1 << 20
    public var lowWaterMark = 256 << 10
    /// true: a peer EOF is reported with `connectionPeerDidHalfClose` and
    /// writing stays possible. false: a peer EOF closes the connection after
    /// pending writes are flushed.
    public var allowHalfClose = false
    /// Close (abort) a connection when no byte was read or written for this long.
    public var idleTimeout: Duration? = nil
    /// Close (abort) a TLS connection whose handshake has not finished this
    /// long after it was accepted (or connected). Unlike the idle timeout,
    /// traffic does not extend it: a peer trickling its ClientHello one byte
    /// at a time is closed all the same.
    public var handshakeTimeout: Duration? = nil
    /// Abort the connection when a write finds more than this many bytes
    /// still queued (the peer is not reading). The queue may exceed the cap
    /// by at most one write, so a protocol layer that sees the cap coming
    /// can still queue its own goodbye (a WebSocket close frame). nil: no cap.
    public var maxQueuedWriteBytes: Int? = nil
    /// Bytes read per readiness event before yielding to other fds.
    public var maxReadPerWakeup = 256 << 10
    public init() {}
}

/// Receives a ``TCPConnection``'s events, on the connection's loop. All
/// methods have empty default implementations except `didRead`.
///
/// The handler sees plaintext whether or not TLS sits in between (see
/// ``TCPConnection/enableTLS(_:)``): handler code does not change.
public protocol TCPConnectionHandler: AnyObject {
    /// Connected (outbound), accepted, or TLS handshake done. Writes before
    /// this are queued.
    func connectionDidBecomeActive(_ connection: TCPConnection)
    /// Bytes arrived. The buffer is the loop's scratch space: valid only
    /// during this call; copy what you keep.
    func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer)
    /// The pending-write queue crossed the high-water mark (false; reads are
    /// paused) or fell back below the low-water mark (true; reads resume).
    func connection(_ connection: TCPConnection, writabilityChanged writable: Bool)
    /// Every queued byte was handed to the kernel.
    func connectionDidDrain(_ connection: TCPConnection)
    /// The peer shut down its write half (only with ``TCPOptions/allowHalfClose``).
    func connectionPeerDidHalfClose(_ connection: TCPConnection)
    /// The connection is closed and its fd released; called exactly once.
    func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason)
}

extension TCPConnectionHandler {
    public func connectionDidBecomeActive(_ connection: TCPConnection) {}
    public func connection(_ connection: TCPConnection, writabilityChanged writable: Bool) {}
    public func connectionDidDrain(_ connection: TCPConnection) {}
    public func connectionPeerDidHalfClose(_ connection: TCPConnection) {}
    public func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) {}
}

/// A socket handed over by ``TCPListener``. The accept callback must adopt it
/// (``TCPConnection/adopt(_:on:options:handler:)``, on any loop) or ``close()`` it.
public struct AcceptedSocket: Sendable {
    public let fd: Int32
    public let remoteAddress: SocketAddress
    /// Closes the fd without using it.
    public func close() { closeFD(fd) }
}

/// Counters shared by all TCP connections.
struct TCPMetrics: @unchecked Sendable {
    let accepted: Counter, acceptErrors: Counter, partialWrites: Counter, open: Gauge
    let bytesIn: Counter, bytesOut: Counter, idleClosed: Counter
    /// The TLS 1.3 record layer (TLS13Records.swift): connections it took over, and refused.
    let tlsTakenOver: Counter, tlsRefused: Counter
    static let shared = TCPMetrics(.shared)
    init(_ r: MetricsRegistry) {
        accepted = r.counter("parley_tcp_accepted_total", help: "TCP connections accepted.")
        acceptErrors = r.counter("parley_tcp_accept_errors_total", help: "accept4 failures (EMFILE, ...).")
        partialWrites = r.counter("parley_tcp_partial_writes_total", help: "TCP writes the kernel took only in part.")
        open = r.gauge("parley_tcp_connections", help: "Open TCP connections.")
        bytesIn = r.counter("parley_tcp_received_bytes_total", help: "TCP bytes read.")
        bytesOut = r.counter("parley_tcp_sent_bytes_total", help: "TCP bytes written.")
        idleClosed = r.counter("parley_tcp_idle_closed_total", help: "TCP connections closed by the idle timeout.")
        tlsTakenOver = r.counter("parley_tls_records_taken_over_total",
                                 help: "TLS 1.3 server connections whose records Parley protects after the handshake (the SSL freed).")
        tlsRefused = r.counter("parley_tls_records_refused_total",
                               help: "Connections closed for a TLS record Parley's record layer refused (bad tag, oversize, unexpected type or alert, KeyUpdate).")
    }
}

/// A byte-stream layer between the socket and the handler (TLS). The
/// connection hands it ciphertext from the socket and plaintext from the
/// handler; the layer calls back `deliver` / `transmit`.
protocol TCPStreamLayer: AnyObject {
    /// Starts the handshake (may transmit).
    func start(_ c: TCPConnection)
    /// Bytes from the socket.
    func receive(_ c: TCPConnection, _ bytes: UnsafeRawBufferPointer)
    /// Plaintext from the handler.
    func send(_ c: TCPConnection, _ bytes: UnsafeRawBufferPointer)
    /// Graceful close: queue a close_notify.
    func close(_ c: TCPConnection)
    /// Frees the layer's state.
    func release()
}

/// A non-blocking TCP connection on one ``EventLoop``. Loop-bound: every
/// method must be called on its loop's thread (asserted).
///
/// Writes: ``write(_:)`` hands bytes straight to the kernel when nothing is
/// queued; what the kernel does not take is copied into a per-connection
/// queue and `EPOLLOUT` is registered only while that queue is non-empty.
/// Past ``TCPOptions/highWaterMark`` reads pause (backpressure towards the
/// peer) until the queue drains below the low-water mark.
///
/// Closing: ``close()`` flushes pending bytes (and a TLS close_notify) first;
/// ``shutdownWrite()`` half-closes after the flush; ``abort()`` drops them.
public final class TCPConnection: EventLoopIOHandler, @unchecked Sendable {
    enum State { case connecting, active, closing, closed }

    /// The connection's loop.
    public let loop: EventLoop
    /// The peer's address.
    public let remoteAddress: SocketAddress
    /// Our address.
    public private(set) var localAddress: SocketAddress?
    /// The handler; released after `didCloseWith`.
    public private(set) var handler: (any TCPConnectionHandler)?
    /// Options in force.
    public let options: TCPOptions
    /// Bytes the handler received / wrote (plaintext when TLS is on).
    public private(set) var bytesRead = 0
    public private(set) var bytesWritten = 0
    /// Writes the kernel took only partly (diagnostics, tests).
    public private(set) var partialWrites = 0

    let fd: Int32
    private var registration: IORegistration?
    private var interest: IOEvents = []
    private var state: State
    private var queue = ByteQueue()
    private var readPaused = false
    private var overHighWater = false
    private var peerEOF = false
    private var wantShutdownWrite = false
    private var writeShutDown = false
    private var closeAfterFlush = false
    private var pendingCloseReason: TCPCloseReason = .local
    private var idleTimer: TimerHandle?
    private var handshakeTimer: TimerHandle?
    private var lastActivity: UInt64 = 0
    var layer: TCPStreamLayer?
    private var layerActive = false
    private let metrics = TCPMetrics.shared

    private init(fd: Int32, loop: EventLoop, remote: SocketAddress, options: TCPOptions,
                 handler: any TCPConnectionHandler, state: State) {
        self.fd = fd; self.loop = loop; self.remoteAddress = remote; self.options = options
        self.handler = handler; self.state = state
        localAddress = try? SocketOps.localAddress(fd)
    }

    deinit {
        precondition(registration == nil, "TCPConnection deallocated while open")
        queue.release()
    }

    private static func configure(_ fd: Int32, _ o: TCPOptions) {
        if o.noDelay { _ = try? SocketOps.setInt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
        if let s = o.sendBufferSize { _ = try? SocketOps.setInt(fd, SOL_SOCKET, SO_SNDBUF, Int32(clamping: s)) }
        if let s = o.receiveBufferSize { _ = try? SocketOps.setInt(fd, SOL_SOCKET, SO_RCVBUF, Int32(clamping: s)) }
    }

    /// Wraps an accepted socket and starts reading. Loop only (the loop may
    /// differ from the listener's). The handler's `connectionDidBecomeActive`
    /// is called before this returns (after the TLS handshake if `tls` is set).
    @discardableResult
    public static func adopt(_ socket: AcceptedSocket, on loop: EventLoop, options: TCPOptions = TCPOptions(),
                             tls: TLSContext? = nil, handler: any TCPConnectionHandler) throws(SystemError) -> TCPConnection {
        loop.preconditionInLoop()
        configure(socket.fd, options)
        let c = TCPConnection(fd: socket.fd, loop: loop, remote: socket.remoteAddress, options: options,
                              handler: handler, state: .active)
        if let tls {
            guard let layer = tls.makeLayer() else {
                closeFD(socket.fd)
                throw SystemError(errno: ENOMEM, function: "SSL_new")
            }
            c.layer = layer
        }
        do {
            try c.registerAndStart(interest: .readable)
        } catch {
            closeFD(socket.fd)
            throw error
        }
        c.becameActive()
        return c
    }

    /// Starts a non-blocking connect to `address`. Loop only. The handler gets
    /// `connectionDidBecomeActive` once connected (and TLS done if `tls` is
    /// set), or `didCloseWith: .connectFailed`. Writes before that are queued.
    /// `localAddress` binds the source address first (port 0: any port), so
    /// a load generator can spread its connections over several loopback
    /// addresses.
    public static func connect(to address: SocketAddress, on loop: EventLoop, options: TCPOptions = TCPOptions(),
                               tls: TLSContext? = nil, localAddress: SocketAddress? = nil,
                               handler: any TCPConnectionHandler) throws(SystemError) -> TCPConnection {
        loop.preconditionInLoop()
        let fd = try SocketOps.socket(address.protocolFamily, Int32(SOCK_STREAM.rawValue))
        configure(fd, options)
        if let localAddress {
            do { try SocketOps.bind(fd, localAddress) } catch {
                closeFD(fd)
                throw error
            }
        }
        let r = address.withSockAddr { sa, len in Glibc.connect(fd, sa, len) }
        if r < 0 {
            let e = errno
            if e != EINPROGRESS && e != EINTR {
                closeFD(fd)
                throw SystemError(errno: e, function: "connect")
            }
        }
        let c = TCPConnection(fd: fd, loop: loop, remote: address, options: options, handler: handler, state: .connecting)
        if let tls {
            guard let layer = tls.makeLayer() else {
                closeFD(fd)
                throw SystemError(errno: ENOMEM, function: "SSL_new")
            }
            c.layer = layer
        }
        do {
            try c.registerAndStart(interest: .writable)
        } catch {
            closeFD(fd)
            throw error
        }
        return c
    }

    private func registerAndStart(interest: IOEvents) throws(SystemError) {
        registration = try loop.register(fd: fd, interest: interest, handler: self)
        self.interest = interest
        metrics.open.inc()
        lastActivity = MonotonicTime.now().nanoseconds
        if let idle = options.idleTimeout { armIdleTimer(after: idle) }
    }

    private func becameActive() {
        if let layer {
            if let d = options.handshakeTimeout {
                handshakeTimer = loop.scheduleTimer(after: d) { [weak self] in
                    guard let self else { return }
                    self.handshakeTimer = nil
                    if !self.layerActive { self.finishClose(.handshakeTimeout) }
                }
            }
            layer.start(self) // handler is told active when the handshake completes
        } else {
            layerActive = true
            handler?.connectionDidBecomeActive(self)
        }
        if state != .closed { flushNow() }
    }

    /// Called by the TLS layer when its handshake completed.
    func layerDidBecomeActive() {
        guard !layerActive, state != .closed else { return }
        layerActive = true
        if let t = handshakeTimer { loop.cancelTimer(t); handshakeTimer = nil }
        handler?.connectionDidBecomeActive(self)
    }

    // MARK: Public state

    /// True until the connection is fully closed.
    public var isOpen: Bool { state != .closed }
    /// True while below the high-water mark.
    public var isWritable: Bool { !overHighWater }
    /// Bytes queued and not yet handed to the kernel (ciphertext with TLS).
    public var pendingWriteBytes: Int { queue.count }

    // MARK: Writing

    /// Writes `bytes` (copied if they cannot be sent at once). Ignored after
    /// ``close()``/``shutdownWrite()``. Loop only.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard state == .active || state == .connecting, !wantShutdownWrite, !writeShutDown else { return }
        bytesWritten += bytes.count
        if let layer { layer.send(self, bytes) } else { transmit(bytes) }
    }

    /// Writes an array's bytes.
    public func write(_ bytes: [UInt8]) { bytes.withUnsafeBytes { write($0) } }
    /// Writes a string's UTF-8.
    public func write(_ text: String) { var t = text; t.withUTF8 { write(UnsafeRawBufferPointer($0)) } }

    /// Raw bytes to the socket (below any layer).
    func transmit(_ bytes: UnsafeRawBufferPointer) {
        guard state != .closed, bytes.count > 0 else { return }
        if let cap = options.maxQueuedWriteBytes, queue.count > cap {
            // The peer has stopped reading; queueing more only grows memory.
            finishClose(.writeQueueFull)
            return
        }
        var rest = bytes
        if queue.isEmpty && state != .connecting {
            switch sendOnce(rest) {
            case .failed: return
            case .sent(let n):
                if n == rest.count { return }
                partialWrites += 1
                metrics.partialWrites.inc()
                rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            }
        }
        queue.append(rest)
        updateInterest()
        if !overHighWater && queue.count >= options.highWaterMark {
            overHighWater = true
            updateInterest()
            handler?.connection(self, writabilityChanged: false)
        }
    }

    private enum SendOutcome { case sent(Int), failed }

    private func sendOnce(_ bytes: UnsafeRawBufferPointer) -> SendOutcome {
        do {
            switch try syscallMayBlock("send", { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }) {
            case .wouldBlock: return .sent(0)
            case .processed(let n):
                metrics.bytesOut.inc(n)
                lastActivity = MonotonicTime.now().nanoseconds
                return .sent(n)
            }
        } catch {
            finishClose(.error(error))
            return .failed
        }
    }

    /// Sends queued bytes until the kernel refuses; runs the drain actions.
    private func flushNow() {
        while !queue.isEmpty {
            let chunk = queue.readable
            switch sendOnce(chunk) {
            case .failed: return
            case .sent(let n):
                queue.consume(n)
                if overHighWater && queue.count <= options.lowWaterMark {
                    overHighWater = false
                    updateInterest()
                    handler?.connection(self, writabilityChanged: true)
                    if state == .closed { return }
                }
                if n < chunk.count {
                    if n > 0 { partialWrites += 1; metrics.partialWrites.inc() }
                    updateInterest()
                    return
                }
            }
        }
        // Drained.
        if wantShutdownWrite && !writeShutDown {
            writeShutDown = true
            Glibc.shutdown(fd, Int32(SHUT_WR))
        }
        if closeAfterFlush || (writeShutDown && peerEOF) {
            finishClose(closeAfterFlush ? pendingCloseReason : .peer)
            return
        }
        updateInterest()
        handler?.connectionDidDrain(self)
    }

    // MARK: Closing

    /// Half-close: after pending bytes are flushed, shut down our write side
    /// (`shutdown(SHUT_WR)`, after a TLS close_notify). Reading continues
    /// until the peer closes. Loop only.
    public func shutdownWrite() {
        loop.assertInLoop()
        guard state == .active || state == .connecting, !wantShutdownWrite else { return }
        layer?.close(self)
        wantShutdownWrite = true
        if queue.isEmpty && state == .active { flushNow() }
    }

    /// Graceful close: stop reading, flush pending writes (TLS close_notify
    /// included), then close the fd and report `.local`. Loop only.
    public func close() { close(reason: .local) }

    func close(reason: TCPCloseReason) {
        loop.assertInLoop()
        guard state == .active || state == .connecting else { return }
        if state == .connecting { finishClose(reason); return }
        if !wantShutdownWrite { layer?.close(self) }
        state = .closing
        closeAfterFlush = true
        pendingCloseReason = reason
        if queue.isEmpty { finishClose(reason) } else { updateInterest() }
    }

    /// Closes now, dropping pending writes. Loop only.
    public func abort() {
        loop.assertInLoop()
        finishClose(.local)
    }

    /// Closes for a TLS failure (called by the layer).
    func fail(_ reason: TCPCloseReason) { finishClose(reason) }

    private func finishClose(_ reason: TCPCloseReason) {
        guard state != .closed else { return }
        state = .closed
        if let t = idleTimer { loop.cancelTimer(t); idleTimer = nil }
        if let t = handshakeTimer { loop.cancelTimer(t); handshakeTimer = nil }
        if let reg = registration {
            loop.deregister(reg)
            registration = nil
            closeFD(fd)
            metrics.open.dec()
        }
        queue.release()
        let h = handler
        handler = nil
        layer?.release()
        layer = nil
        h?.connection(self, didCloseWith: reason)
    }

    public func loopIsShuttingDown(graceful: Bool) {
        if graceful { close(reason: .shutdown) } else { finishClose(.shutdown) }
    }

    // MARK: Reading

    /// Pauses reading (no `didRead` until ``resumeReading()``). Loop only.
    public func pauseReading() { loop.assertInLoop(); readPaused = true; updateInterest() }
    /// Resumes reading after ``pauseReading()``. Loop only.
    public func resumeReading() { loop.assertInLoop(); readPaused = false; updateInterest() }

    /// Hands bytes from the layer (plaintext) to the handler.
    func deliver(_ bytes: UnsafeRawBufferPointer) {
        guard state == .active || state == .closing, let handler else { return }
        bytesRead += bytes.count
        handler.connection(self, didRead: bytes)
    }

    private func readable() {
        var budget = options.maxReadPerWakeup
        let buf = loop.readBuffer
        while budget > 0 && state == .active && !readPaused && !overHighWater {
            let r: IOResult<Int>
            do {
                r = try syscallMayBlock("recv") { Glibc.recv(fd, buf.baseAddress, buf.count, 0) }
            } catch {
                finishClose(.error(error))
                return
            }
            guard case .processed(let n) = r else { return }
            if n == 0 { peerClosed(); return }
            metrics.bytesIn.inc(n)
            lastActivity = MonotonicTime.now().nanoseconds
            budget -= n
            let bytes = UnsafeRawBufferPointer(rebasing: buf[0..<n])
            if let layer { layer.receive(self, bytes) } else { deliver(bytes) }
            if n < buf.count { return }
        }
    }

    /// The TLS layer saw the peer's close_notify: same as a TCP EOF.
    func layerPeerClosed() {
        guard !peerEOF, state != .closed else { return }
        peerClosed()
    }

    private func peerClosed() {
        peerEOF = true
        updateInterest()
        if writeShutDown { finishClose(.peer); return }
        if options.allowHalfClose && state == .active {
            handler?.connectionPeerDidHalfClose(self)
        } else {
            close(reason: .peer)
        }
    }

    // MARK: Events

    private func updateInterest() {
        guard let reg = registration else { return }
        var want: IOEvents = []
        switch state {
        case .connecting: want = .writable
        case .active, .closing:
            if state == .active && !readPaused && !overHighWater && !peerEOF { want.insert(.readable) }
            if !queue.isEmpty { want.insert(.writable) }
        case .closed: return
        }
        if want != interest {
            interest = want
            do { try loop.modify(reg, interest: want) } catch { finishClose(.error(error)) }
        }
    }

    public func handleIO(_ events: IOEvents) {
        if state == .connecting {
            let err = SocketOps.getInt(fd, SOL_SOCKET, SO_ERROR)
            if err != 0 || events.contains(.error) {
                finishClose(.connectFailed(SystemError(errno: err == 0 ? ECONNREFUSED : err, function: "connect")))
                return
            }
            guard events.contains(.writable) else { return }
            state = .active
            localAddress = try? SocketOps.localAddress(fd)
            updateInterest()
            becameActive()
            return
        }
        if events.contains(.error) && !events.contains(.readable) {
            let err = SocketOps.getInt(fd, SOL_SOCKET, SO_ERROR)
            finishClose(.error(SystemError(errno: err == 0 ? EIO : err, function: "epoll")))
            return
        }
        if events.contains(.writable) && state != .closed { flushNow() }
        guard state != .closed else { return }
        let reading = state == .active && !readPaused && !overHighWater && !peerEOF
        if events.contains(.readable) && reading { readable() }
        // EPOLLHUP: both directions are gone and it is reported even without
        // interest; if we are not reading it to EOF, nothing more can happen.
        if events.contains(.hangup) && state != .closed && !(reading && events.contains(.readable)) {
            finishClose(.peer)
        }
    }

    // MARK: Idle timeout

    private func armIdleTimer(after d: Duration) {
        idleTimer = loop.scheduleTimer(after: d) { [weak self] in self?.idleTimerFired() }
    }

    private func idleTimerFired() {
        idleTimer = nil
        guard state != .closed, let idle = options.idleTimeout else { return }
        let now = MonotonicTime.now().nanoseconds
        let limit = UInt64(max(0, idle.nanosecondsClamped))
        let quiet = now &- lastActivity
        if quiet >= limit {
            metrics.idleClosed.inc()
            finishClose(.idleTimeout)
        } else {
            armIdleTimer(after: .nanoseconds(Int64(limit - quiet)))
        }
    }
}
