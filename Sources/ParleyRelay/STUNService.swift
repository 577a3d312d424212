import ParleyCore
import ParleyIO
import ParleySTUN

/// A plain STUN server (RFC 8489 Binding, no credentials) on its own UDP
/// port, 3478 by default: any client learns its server-reflexive address
/// from the XOR-MAPPED-ADDRESS. Nothing here touches relay sessions.
/// Each source IP gets at most `STUNRateLimit` answers (burst, then a
/// rate): the source can be spoofed, and the answer is larger than the
/// request, so an unlimited service reflects floods at third parties.
///
/// Loop-bound: create and close it on its loop (`start` does that for you).
public final class STUNService: UDPSocketHandler, @unchecked Sendable {
    /// The default STUN port (RFC 8489 §18.6).
    public static let defaultPort: UInt16 = 3478

    public let loop: EventLoop
    private var socket: UDPSocket!
    private let responder = BindingResponder(software: "parley", alwaysFingerprint: false)
    /// Tests: sees the source of every datagram (to check what a client was told).
    var observer: ((SocketAddress) -> Void)?
    private let limiter: SourceRateLimiter?
    private let answered: Counter
    private let rejected: Counter
    private let limited: Counter

    /// Binds `address` on `loop`; `rateLimit` nil answers without limit. Loop only.
    public init(loop: EventLoop, bindTo address: SocketAddress, rateLimit: STUNRateLimit? = STUNRateLimit(),
                metrics: MetricsRegistry = .shared) throws(RelayError) {
        loop.preconditionInLoop()
        self.loop = loop
        limiter = rateLimit.map(SourceRateLimiter.init)
        let help = "Requests to the STUN service, by result (success, rejected, rate_limited)."
        answered = metrics.counter("parley_stun_bindings_total", help: help, labels: [("result", "success")])
        rejected = metrics.counter("parley_stun_bindings_total", help: help, labels: [("result", "rejected")])
        limited = metrics.counter("parley_stun_bindings_total", help: help, labels: [("result", "rate_limited")])
        var opts = UDPSocket.Options()
        opts.metrics = metrics
        do {
            socket = try UDPSocket(loop: loop, bindTo: address, options: opts, handler: self)
        } catch {
            throw .bindFailed(address: address.description, reason: error.message)
        }
    }

    /// Binds on `loop` from any thread but that loop's, blocking until bound.
    public static func start(on loop: EventLoop, bindTo address: SocketAddress, rateLimit: STUNRateLimit? = STUNRateLimit(),
                             metrics: MetricsRegistry = .shared) throws(RelayError) -> STUNService {
        let r: Result<STUNService, RelayError>
        do {
            r = try loop.submit {
                Result { () throws(RelayError) in try STUNService(loop: loop, bindTo: address, rateLimit: rateLimit, metrics: metrics) }
            }
        } catch {
            throw .bindFailed(address: address.description, reason: "\(error)")
        }
        return try r.get()
    }

    /// The bound address.
    public var localAddress: SocketAddress { socket.localAddress }

    /// Stops the service. Loop only (or via `loop.execute`).
    public func close() { socket.close() }

    public func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
        let out: UDPSendBatch = socket.sendBatch
        let now = MonotonicTime.now().nanoseconds
        var ok = 0, bad = 0, over = 0
        for i in 0..<batch.count {
            let d = batch[i]
            observer?(d.source)
            if let l = limiter, !l.admit(d.source, nowNs: now) { over += 1; continue }
            let source = STUNAddress(d.source)
            var success = false
            out.append(to: d.source, maxLength: 512) { buf in
                guard let o = try? responder.respond(to: d.bytes, from: source, into: buf) else { return 0 }
                if case .success = o { success = true }
                return o.length
            }
            if success { ok += 1 } else { bad += 1 }
        }
        // Count before sending so a client that got its answer sees the count.
        if ok > 0 { answered.inc(ok) }
        if bad > 0 { rejected.inc(bad) }
        if over > 0 { limited.inc(over) }
        out.flush()
    }
}
