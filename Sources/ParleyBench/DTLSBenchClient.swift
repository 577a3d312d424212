import Glibc
import ParleyCore
import ParleyIO
import ParleyDTLS
import ParleySRTP

/// The client side of a DTLS-SRTP handshake (RFC 5764) over a real UDP
/// socket, for `parley bench srtp --mode dtls`: each bench participant,
/// latched through ICE like a browser, runs the handshake with the relay from
/// its own port, and the keys it exports are handed to the load generator.
/// Blocking, on the caller's thread (the relay runs on its event loop).
enum DTLSBenchClient {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Runs the handshake from 127.0.0.1:`port` to `relay` as the DTLS client
    /// and returns the exported keys (`local`: what this participant protects
    /// with, `remote`: what the relay protects with towards it).
    static func handshake(relay: SocketAddress, port: UInt16, context: DTLSContext,
                          serverFingerprint: String) throws -> DTLSSRTPKeys {
        let fd = socket(relay.protocolFamily, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let local = relay.family == .ipv4 ? SocketAddress.ipv4Loopback(port: port) : SocketAddress.ipv6Loopback(port: port)
        guard local.withSockAddr({ Glibc.bind(fd, $0, $1) }) == 0 else { throw Failure(description: "bind \(local): errno \(errno)") }
        let endpoint = try DTLSEndpoint(context: context, role: .client, remoteFingerprint: serverFingerprint)
        func send(_ datagrams: [[UInt8]]) {
            for d in datagrams {
                _ = d.withUnsafeBytes { b in relay.withSockAddr { sendto(fd, b.baseAddress, b.count, 0, $0, $1) } }
            }
        }
        send(endpoint.start())
        var buf = [UInt8](repeating: 0, count: 2048)
        let deadline = MonotonicTime.now().milliseconds + 10_000
        while MonotonicTime.now().milliseconds < deadline {
            switch endpoint.state {
            case .connected(let keys): return keys
            case .failed(let e): throw Failure(description: "DTLS handshake failed: \(e)")
            case .handshaking: break
            }
            let wait = endpoint.timerDelay().map { Int32(clamping: $0.millisecondsRoundedUp) } ?? 1000
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, max(1, wait)) == 1 {
                let n = recv(fd, &buf, buf.count, 0)
                // STUN (the relay's consent checks, first byte 0–3) is not ours here.
                guard n > 0, (20...63).contains(buf[0]) else { continue }
                let (_, out) = buf.withUnsafeBytes { endpoint.receive(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                send(out)
            } else {
                send(endpoint.handleTimer())
            }
        }
        throw Failure(description: "DTLS handshake with \(relay) from port \(port) did not finish in 10 s")
    }
}
