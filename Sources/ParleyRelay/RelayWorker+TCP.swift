import Glibc
import Synchronization
import ParleyCore
import ParleyIO
import ParleyRTP

/// Media over TCP (RFC 4571 framing: each packet behind a 2-byte big-endian
/// length), for networks that carry no UDP: ICE-TCP passive candidates
/// (RFC 6544) for WebRTC peers, and the same framed stream for SDES clients.
///
/// A TCP media connection is one more *address* on the packet path: it gets
/// a synthetic `SocketAddress` (`isRelayTCP`) that no UDP datagram can come
/// from, and every framed packet read from it goes through
/// `handleDatagram(_:from:)` exactly as a datagram from that address would.
/// STUN (ICE, consent), DTLS, SRTP/SRTCP, latching, forwarding, RTCP all run
/// unchanged; only the last step differs: a copy queued to a TCP address is
/// framed and written to its connection (`queue`/`send` in RelayWorker.swift
/// dispatch on `isRelayTCP`). A participant's transport is therefore what its
/// latched address is: UDP or TCP.
///
/// Bounds (docs/security.md): connections in total and per source IP
/// (`TCPMediaAdmission`, shared by the relay's loops), the frame size read
/// (bigger frames are skipped and counted), the bytes queued per connection
/// (a copy that does not fit is dropped and counted: a slow reader never
/// holds the relay), and an idle timeout. Loop only.
public struct RelayTCPConfig: Sendable {
    /// Open TCP media connections, all loops together.
    public var maxConnections = 1000
    /// Open TCP media connections from one source IP.
    public var maxConnectionsPerIP = 16
    /// Largest RFC 4571 frame read (bytes after the length); bigger ones are skipped and counted.
    public var maxFrameBytes = 4096
    /// Bytes a connection may have queued for its peer; a packet that would exceed it is dropped and counted.
    public var writeBufferBytes = 256 << 10
    /// A connection that moves no byte for this long is closed.
    public var idleTimeout: Duration = .seconds(30)

    public init() {}
}

/// Admission of TCP media connections: a total and a per-IP count, shared by
/// every loop's listener (accepts are rare: a `Mutex` is fine).
public final class TCPMediaAdmission: Sendable {
    private struct State { var total = 0; var perIP: [SocketAddress: Int] = [:] }
    private let state = Mutex(State())
    let maxTotal: Int
    let maxPerIP: Int

    public init(maxTotal: Int, maxPerIP: Int) {
        self.maxTotal = maxTotal
        self.maxPerIP = maxPerIP
    }

    enum Refusal { case total, perIP }

    /// Takes a slot for a connection from `peer`, or says why not.
    func admit(_ peer: SocketAddress) -> Refusal? {
        let ip = peer.withPort(0)
        return state.withLock { s in
            if s.total >= maxTotal { return .total }
            if s.perIP[ip, default: 0] >= maxPerIP { return .perIP }
            s.total += 1
            s.perIP[ip, default: 0] += 1
            return nil
        }
    }

    /// Gives back the slot of a connection from `peer`.
    func release(_ peer: SocketAddress) {
        let ip = peer.withPort(0)
        state.withLock { s in
            s.total -= 1
            let n = s.perIP[ip, default: 1] - 1
            s.perIP[ip] = n > 0 ? n : nil
        }
    }

    /// Open connections (tests).
    public var open: Int { state.withLock { $0.total } }
}

/// The TCP media counters.
struct RelayTCPMetrics {
    let open: Gauge
    let accepted, refusedTotal, refusedPerIP: Counter
    let droppedWriteBuffer, droppedFrameTooLarge: Counter
    let unlatchedClosed: Counter

    init(_ r: MetricsRegistry) {
        open = r.gauge("parley_relay_tcp_connections", help: "Open TCP media connections (RFC 4571 framing).")
        let help = "TCP media connections offered, by result."
        accepted = r.counter("parley_relay_tcp_connections_total", help: help, labels: [("result", "accepted")])
        refusedTotal = r.counter("parley_relay_tcp_connections_total", help: help, labels: [("result", "refused_total")])
        refusedPerIP = r.counter("parley_relay_tcp_connections_total", help: help, labels: [("result", "refused_per_ip")])
        unlatchedClosed = r.counter("parley_relay_tcp_unlatched_closed_total",
                                    help: "TCP media connections closed because no participant latched them within the idle timeout.")
        let dropHelp = "Packets the relay dropped on TCP media connections, by reason."
        droppedWriteBuffer = r.counter("parley_relay_tcp_dropped_total", help: dropHelp, labels: [("reason", "write_buffer_full")])
        droppedFrameTooLarge = r.counter("parley_relay_tcp_dropped_total", help: dropHelp, labels: [("reason", "frame_too_large")])
    }
}

extension SocketAddress {
    /// `[::]:port`: a media socket bound there takes both address families.
    var isIPv6Wildcard: Bool { family == .ipv6 && self == .ipv6Any(port: port) }

    /// The scope id that marks the relay's synthetic TCP media addresses
    /// (with the RFC 6666 discard prefix 100::/64; real scope ids are small
    /// interface indexes, and no datagram comes from 100::/64).
    static let relayTCPScope: UInt32 = .max

    /// Whether this is the relay's name for a TCP media connection, not a UDP peer.
    @inline(__always) var isRelayTCP: Bool { scopeID == Self.relayTCPScope }

    /// The synthetic address of TCP media connection `id` (port: the peer's, for logs).
    static func relayTCP(id: UInt64, port: UInt16) -> SocketAddress {
        var a = in6_addr()
        withUnsafeMutableBytes(of: &a) { b in
            b[0] = 0x01 // 100::/64
            for i in 0..<8 { b[8 + i] = UInt8(truncatingIfNeeded: id >> (56 - 8 * UInt64(i))) }
        }
        return SocketAddress(ipv6: a, port: port, scopeID: relayTCPScope)
    }
}

/// One accepted TCP media connection: RFC 4571 reassembly in, framed writes out.
final class MediaTCPConnection: TCPConnectionHandler {
    /// Its synthetic address on the packet path.
    let address: SocketAddress
    /// The real peer.
    let peer: SocketAddress
    weak var worker: RelayWorker?
    var connection: TCPConnection?
    /// The frame being read: 2 length bytes, then up to `maxFrameBytes`.
    let buffer: UnsafeMutableRawBufferPointer
    var have = 0
    /// Bytes of an oversized frame still to skip.
    var skip = 0
    let maxFrame: Int
    /// Closes the connection if nobody has latched it by then (`idleTimeout` after accept).
    var latchDeadline: TimerHandle?

    init(address: SocketAddress, peer: SocketAddress, worker: RelayWorker, maxFrame: Int) {
        self.address = address
        self.peer = peer
        self.worker = worker
        self.maxFrame = maxFrame
        buffer = .allocate(byteCount: 2 + maxFrame, alignment: 16)
    }

    deinit { buffer.deallocate() }

    func connection(_ connection: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        guard let w = worker else { connection.abort(); return }
        w.tickClock()
        var at = 0
        while at < bytes.count {
            if skip > 0 {
                let k = min(skip, bytes.count - at)
                skip -= k
                at += k
                continue
            }
            if have < 2 {
                buffer[have] = bytes[at]
                have += 1
                at += 1
                continue
            }
            let length = Int(buffer[0]) << 8 | Int(buffer[1])
            if length > maxFrame {
                w.tcpMetrics.droppedFrameTooLarge.inc()
                skip = length
                have = 0
                continue
            }
            let k = min(2 + length - have, bytes.count - at)
            UnsafeMutableRawBufferPointer(rebasing: buffer[have..<(have + k)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + k)]))
            have += k
            at += k
            if have == 2 + length { frameDone(length, w) }
        }
        // A zero-length frame completes with its header.
        if have == 2, buffer[0] == 0, buffer[1] == 0 { have = 0 }
    }

    private func frameDone(_ length: Int, _ w: RelayWorker) {
        have = 0
        guard length > 0 else { return }
        w.handleDatagram(UnsafeRawBufferPointer(rebasing: buffer[2..<(2 + length)]), from: address)
        // Copies may be queued by reference into `buffer`, which the next frame reuses: send them now.
        w.flush()
    }

    func connection(_ connection: TCPConnection, didCloseWith reason: TCPCloseReason) {
        worker?.tcpClosed(self)
        self.connection = nil
    }

}

extension RelayWorker {
    /// Starts the TCP media listener on this loop (from `init`).
    func startTCP(_ address: SocketAddress) throws(RelayError) {
        do {
            tcpListener = try TCPListener(loop: loop, bindTo: address, ipv6Only: !address.isIPv6Wildcard) { [weak self] sock in
                guard let self else { sock.close(); return }
                self.tcpAccepted(sock)
            }
        } catch {
            throw .bindFailed(address: address.description, reason: error.message)
        }
        let bound = tcpListener!.localAddress
        if let host = config.announcedHost {
            tcpEndpoint = host.contains(":") ? "[\(host)]:\(bound.port)" : "\(host):\(bound.port)"
        } else {
            tcpEndpoint = bound.description
        }
    }

    /// The bound TCP media address, if TCP media is on.
    public var tcpLocalAddress: SocketAddress? { tcpListener?.localAddress }

    func tcpAccepted(_ sock: AcceptedSocket) {
        switch tcpAdmission?.admit(sock.remoteAddress) {
        case .total?: tcpMetrics.refusedTotal.inc(); sock.close(); return
        case .perIP?: tcpMetrics.refusedPerIP.inc(); sock.close(); return
        case nil: break
        }
        tcpSerial += 1
        let h = MediaTCPConnection(address: .relayTCP(id: UInt64(index) << 48 | tcpSerial, port: sock.remoteAddress.port),
                                   peer: sock.remoteAddress, worker: self, maxFrame: config.tcp.maxFrameBytes)
        var o = TCPOptions()
        o.idleTimeout = config.tcp.idleTimeout
        // The relay drops what does not fit in `writeBufferBytes` before the
        // connection would ever pause reads for its own high-water mark.
        o.highWaterMark = config.tcp.writeBufferBytes + 70_000
        o.lowWaterMark = config.tcp.writeBufferBytes / 2
        tcpConnections[h.address] = h
        tcpMetrics.accepted.inc()
        tcpMetrics.open.inc()
        // A connection must carry a latched participant (an authenticated
        // Binding request and the consent check over it) within the idle
        // timeout, however busy it is; otherwise it is closed.
        h.latchDeadline = loop.scheduleTimer(after: config.tcp.idleTimeout) { [weak self, weak h] in
            guard let self, let h else { return }
            h.latchDeadline = nil
            if byAddress[h.address] == nil {
                tcpMetrics.unlatchedClosed.inc()
                h.connection?.abort()
            }
        }
        do {
            h.connection = try TCPConnection.adopt(sock, on: loop, options: o, handler: h)
        } catch {
            // adopt closed the socket; its close callback may not have run.
            if tcpConnections[h.address] != nil { tcpClosed(h) }
        }
    }

    /// A connection closed (peer, idle, error or us): its address no longer
    /// reaches anyone. A participant latched to it keeps its place until it
    /// latches elsewhere or times out.
    func tcpClosed(_ c: MediaTCPConnection) {
        guard tcpConnections[c.address] === c else { return }
        tcpConnections[c.address] = nil
        tcpAdmission?.release(c.peer)
        tcpMetrics.open.dec()
        if let t = c.latchDeadline { loop.cancelTimer(t); c.latchDeadline = nil }
        if let p = byAddress[c.address] {
            byAddress[c.address] = nil
            p.address = nil
            p.room.addressChanged(p)
        }
    }

    /// Frames `bytes` (protected with `subscriber`'s hook, payload type
    /// rewritten when asked) onto TCP connection `dest`. Never blocks: a copy
    /// that does not fit in the connection's write budget is dropped and counted.
    func tcpQueue(_ bytes: UnsafeRawBufferPointer, to dest: SocketAddress, subscriber: Participant?, isRTCP: Bool,
                  payloadType: UInt8 = 0xFF, extensions: RTPHeaderExtensionMap? = nil, renumber: Renumbering? = nil) {
        guard let c = tcpConnections[dest]?.connection else { return }
        // Room for the SRTP tag and MKI the hook may add.
        guard bytes.count + 64 <= 65535, bytes.count + 66 <= tcpScratch.count else { tcpMetrics.droppedFrameTooLarge.inc(); return }
        if c.pendingWriteBytes + bytes.count + 66 > config.tcp.writeBufferBytes {
            tcpMetrics.droppedWriteBuffer.inc()
            return
        }
        let body = UnsafeMutableRawBufferPointer(rebasing: tcpScratch[2...])
        body.copyMemory(from: bytes)
        var n = bytes.count
        if let s = subscriber, renumber != nil, s.crypto == nil {
            rewriteForSubscriber(body, length: n, s, isRTCP: isRTCP, payloadType: payloadType, extensions: extensions, renumber: renumber)
        }
        if let s = subscriber, let crypto = s.crypto {
            rewriteForSubscriber(body, length: n, s, isRTCP: isRTCP, payloadType: payloadType, extensions: extensions, renumber: renumber)
            guard let m = crypto.protect(body, n, isRTCP) else { return }
            n = m
        }
        tcpScratch[0] = UInt8(n >> 8)
        tcpScratch[1] = UInt8(n & 0xFF)
        c.write(UnsafeRawBufferPointer(rebasing: tcpScratch[0..<(2 + n)]))
        tally.packetsOut += 1
        tally.bytesOut += bytes.count
    }

    /// The address to show for `a` (the real peer of a TCP media connection, as `tcp:IP:PORT`).
    func describe(_ a: SocketAddress) -> String {
        guard a.isRelayTCP else { return a.description }
        return "tcp:" + (tcpConnections[a]?.peer.description ?? "closed")
    }

    /// The real peer of `a` (for STUN's XOR-MAPPED-ADDRESS).
    @inline(__always) func peerAddress(_ a: SocketAddress) -> SocketAddress {
        a.isRelayTCP ? (tcpConnections[a]?.peer ?? a) : a
    }

    /// Closes the TCP media connection of `a`, if it is one (its participant left).
    func closeTCP(_ a: SocketAddress?) {
        guard let a, a.isRelayTCP, let c = tcpConnections[a] else { return }
        c.connection?.close()
    }
}
