import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySTUN
import ParleySRTP

/// The relay on one event loop: that loop's media socket, the rooms pinned
/// to the loop, and the packet path.
///
/// Datagrams arrive in `recvmmsg` batches and are demultiplexed by their
/// first byte (RFC 7983): STUN goes to the Binding responder, RTP and RTCP
/// to the sender's `Room`. The sender is found by source address among
/// latched participants only; anything else is dropped and counted. Media
/// moves to a new address only after a consent check there succeeds (or an
/// SRTP packet from there authenticates): see docs/protocol.md. Every
/// forwarded copy is queued on the socket's `sendmmsg` batch, flushed once
/// at the end of the receive batch. One clock read per batch.
///
/// Its jobs are split by file: the packet path (RelayWorker+Packets), RTCP
/// feedback (+RTCP), STUN and consent (+STUN), participants' addresses and
/// housekeeping (+Participants) and the control operations `Relay` posts
/// (+Control).
///
/// Loop-bound: every method must run on `loop` (use `Relay` from other threads).
public final class RelayWorker: UDPSocketHandler, @unchecked Sendable {
    /// The loop this worker and its rooms live on.
    public let loop: EventLoop
    /// Index of this worker (its loop) in the relay.
    public let index: Int
    /// The media endpoint announced to clients (`host:port`).
    public private(set) var endpoint: String = ""
    /// The bound media address.
    public var localAddress: SocketAddress { socket.localAddress }

    let config: RelayConfig
    let metrics: RelayMetrics
    /// The relay's ICE tie-breaker (RFC 8445 §7.1.3; as a lite agent it is always controlled).
    let iceTieBreaker = UInt64.random(in: 0...UInt64.max)
    /// PRIORITY of the relay's host candidate (RFC 8445 §5.1.2.1: type preference 126, local 65535, component 1).
    static let hostPriority: UInt32 = (126 << 24) | (65535 << 8) | 255
    /// Counters of the SRTP hooks the relay builds itself (DTLS-keyed participants).
    let srtpMetrics: SRTPMetrics
    /// Where rooms are placed; told when one of this loop's rooms closes.
    let directory: any RoomDirectory
    var socket: UDPSocket!
    var rooms: [String: Room] = [:]
    var byAddress: [SocketAddress: Participant] = [:]
    /// RTCP addresses latched apart from the media address (ffmpeg's RTP port + 1).
    var byRTCPAddress: [SocketAddress: Participant] = [:]
    /// Consent checks in flight, by the transaction ID of the relay's request.
    var consentChecks: [STUNTransactionID: Participant] = [:]
    /// Retransmits consent checks while any is in flight.
    var consentTimer: TimerHandle?
    var byUfrag: [String: Participant] = [:]
    var housekeeping: TimerHandle?
    /// Sends transport-wide feedback while some participant negotiated it.
    var transportFeedbackTimer: TimerHandle?
    let responder = BindingResponder(software: "parley", alwaysFingerprint: true)
    /// Limits unauthenticated STUN answers to addresses nobody latched.
    let stunLimiter: SourceRateLimiter?
    /// Scratch space for RTCP we build (RR, PLI, FIR) and STUN responses
    /// before queuing copies.
    let scratch: UnsafeMutableRawBufferPointer
    /// Scratch space for the relay's own Binding requests (consent checks),
    /// apart from `scratch`, which holds the response they precede.
    let checkScratch: UnsafeMutableRawBufferPointer
    /// Scratch space for the renumbered copy of a simulcast packet handed to a room's recorder (any RTP size).
    let tapScratch: UnsafeMutableRawBufferPointer
    // Per batch: the one clock read, and tallies flushed to metrics at the end.
    var nowNs: UInt64 = 0
    var nowMs: UInt64 = 0
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, read at start and each housekeeping
    /// run: `wallNowNs` is the batch's wall-clock time without a second read.
    var wallOffsetNs: Int64 = 0
    var wallNowNs: Int64 { Int64(nowNs) + wallOffsetNs }
    var tally = BatchCounters()
    /// Residence times (socket arrival → `sendmmsg` done) while measured.
    var residence = LatencyHistogram()
    // TCP media (RelayWorker+TCP): the listener, its connections by synthetic address, their bounds.
    var tcpListener: TCPListener?
    /// The TCP media endpoint announced to clients (`host:port`), when TCP media is on.
    public internal(set) var tcpEndpoint: String?
    var tcpConnections: [SocketAddress: MediaTCPConnection] = [:]
    var tcpSerial: UInt64 = 0
    let tcpAdmission: TCPMediaAdmission?
    let tcpMetrics: RelayTCPMetrics
    /// Where a framed copy for a TCP connection is built (length, packet, room for the SRTP tag).
    let tcpScratch: UnsafeMutableRawBufferPointer

    /// Binds the media socket on `loop` (and with `tcp` a TCP media listener,
    /// admitted by the shared `tcpAdmission`) and starts housekeeping. Loop only.
    public init(loop: EventLoop, index: Int, bindTo address: SocketAddress, config: RelayConfig,
                directory: any RoomDirectory, tcp: SocketAddress? = nil,
                tcpAdmission: TCPMediaAdmission? = nil) throws(RelayError) {
        loop.preconditionInLoop()
        self.loop = loop
        self.index = index
        self.directory = directory
        self.config = config
        metrics = RelayMetrics(config.metrics)
        srtpMetrics = SRTPMetrics(config.metrics)
        stunLimiter = config.stunRateLimit.map(SourceRateLimiter.init)
        scratch = .allocate(byteCount: 1500, alignment: 16)
        checkScratch = .allocate(byteCount: 512, alignment: 16)
        tapScratch = .allocate(byteCount: 65536, alignment: 16)
        tcpMetrics = RelayTCPMetrics(config.metrics)
        self.tcpAdmission = tcp == nil ? nil : tcpAdmission ?? TCPMediaAdmission(maxTotal: config.tcp.maxConnections,
                                                                                 maxPerIP: config.tcp.maxConnectionsPerIP)
        tcpScratch = .allocate(byteCount: tcp == nil ? 0 : 2 + 65535 + 64, alignment: 16)
        var opts = UDPSocket.Options()
        opts.batchSize = config.batchSize
        // A full send batch flushes; each flush groups what it holds by
        // subscriber into UDP GSO runs.
        opts.sendBatchSize = config.sendBatchSize
        opts.receiveBufferSize = config.socketBufferSize
        opts.sendBufferSize = config.socketBufferSize
        opts.metrics = config.metrics
        // Bound to `::`: one dual-stack socket takes both families (IPv4 peers as IPv4-mapped addresses).
        opts.ipv6Only = !address.isIPv6Wildcard
        do {
            socket = try UDPSocket(loop: loop, bindTo: address, options: opts, handler: self)
        } catch {
            // self is fully initialised here, so deinit frees the scratch buffers.
            throw .bindFailed(address: address.description, reason: error.message)
        }
        let bound = socket.localAddress
        if let host = config.announcedHost {
            endpoint = host.contains(":") ? "[\(host)]:\(bound.port)" : "\(host):\(bound.port)"
        } else {
            endpoint = bound.description
        }
        if let tcp {
            do throws(RelayError) { try startTCP(tcp) } catch {
                socket.close()
                throw error
            }
        }
        tickClock()
        tickClock()
        wallOffsetNs = realtimeNanoseconds() - Int64(nowNs)
        housekeeping = loop.scheduleRepeatingTimer(every: config.housekeepingInterval) { [weak self] in self?.runHousekeeping() }
    }

    deinit {
        scratch.deallocate()
        checkScratch.deallocate()
        tapScratch.deallocate()
        tcpScratch.deallocate()
    }

    /// Closes every room and the socket. Loop only.
    public func close() {
        loop.preconditionInLoop()
        for name in Array(rooms.keys) { _ = closeRoom(name) }
        if let h = housekeeping { loop.cancelTimer(h); housekeeping = nil }
        if let h = consentTimer { loop.cancelTimer(h); consentTimer = nil }
        if let h = transportFeedbackTimer { loop.cancelTimer(h); transportFeedbackTimer = nil }
        socket?.close()
        tcpListener?.close()
        for c in Array(tcpConnections.values) { c.connection?.abort() }
    }


    /// Reads the monotonic clock into `nowNs`/`nowMs`: once per receive
    /// batch, per housekeeping run, and in control calls that send.
    @inline(__always) func tickClock() {
        nowNs = MonotonicTime.now().nanoseconds
        nowMs = nowNs / 1_000_000
    }

    // MARK: Sending

    /// Sends what is queued and moves the batch tallies to the metrics.
    func flush() {
        // Count first: whoever receives what we send may read the metrics.
        tally.flush(to: metrics)
        tally = BatchCounters()
        socket.sendBatch.flush()
    }

    /// Queues `bytes` for `dest`: by reference when nobody needs a private
    /// copy, else copied (and protected with the subscriber's hook).
    @inline(__always)
    func queue(_ bytes: UnsafeRawBufferPointer, to dest: SocketAddress, subscriber: Participant?,
                       isRTCP: Bool, byReference: Bool, payloadType: UInt8 = 0xFF, extensions: RTPHeaderExtensionMap? = nil,
                       renumber: Renumbering? = nil) {
        if dest.isRelayTCP {
            tcpQueue(bytes, to: dest, subscriber: subscriber, isRTCP: isRTCP, payloadType: payloadType, extensions: extensions,
                     renumber: renumber)
            return
        }
        if let s = subscriber, s.crypto != nil || renumber != nil {
            let c = s.crypto
            socket.sendBatch.append(to: dest) { buf in
                guard bytes.count <= buf.count else { return 0 }
                buf.copyMemory(from: bytes)
                rewriteForSubscriber(buf, length: bytes.count, s, isRTCP: isRTCP, payloadType: payloadType, extensions: extensions,
                                     renumber: renumber)
                guard let c else { return bytes.count }
                return c.protect(buf, bytes.count, isRTCP) ?? 0
            }
        } else if byReference {
            socket.sendBatch.appendNoCopy(bytes, to: dest)
        } else {
            socket.sendBatch.append(bytes, to: dest)
        }
        tally.packetsOut += 1
        tally.bytesOut += bytes.count
    }

    /// What a subscriber's copy of a packet gets before `protect`: the
    /// payload type it negotiated for the codec (RTP only; the marker bit
    /// kept) and its header extension ids (RTP of a publisher that
    /// negotiated some, to a subscriber that did). Counted.
    @inline(__always)
    func rewriteForSubscriber(_ buf: UnsafeMutableRawBufferPointer, length: Int, _ s: Participant, isRTCP: Bool,
                              payloadType: UInt8, extensions: RTPHeaderExtensionMap?, renumber: Renumbering? = nil) {
        if let r = renumber, length >= 12 {
            buf.put16(r.sequence, at: 2)
            buf.put32(r.timestamp, at: 4)
            buf.put32(r.ssrc, at: 8)
        }
        if payloadType < 128, length > 1 {
            buf[1] = buf[1] & 0x80 | payloadType
            tally.payloadTypeRewrites += 1
        }
        if !isRTCP, let source = extensions, let target = s.extensions {
            target.rewrite(buf, length: length, from: source, transportSequence: &s.transportSequenceOut,
                           absSendTime: RTPHeaderExtensionMap.absSendTime(nanoseconds: nowNs))
            tally.headerExtensionRewrites += 1
        }
    }

    /// Queues a copy of a packet the relay built itself.
    func send(_ bytes: UnsafeRawBufferPointer, to dest: SocketAddress) {
        if dest.isRelayTCP { tcpQueue(bytes, to: dest, subscriber: nil, isRTCP: false); return }
        socket.sendBatch.append(bytes, to: dest)
        tally.packetsOut += 1
        tally.bytesOut += bytes.count
    }
}
