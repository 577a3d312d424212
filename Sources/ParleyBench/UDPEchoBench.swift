import Glibc
import ParleyCore
import ParleyIO

/// The Parley side of `tools/bench/udp-echo`: a UDP echo server on ParleyIO
/// (epoll loop, recvmmsg batch in, sendmmsg batch out, no allocation per
/// packet). The CLI exposes it as `parley bench udp-echo`; the C baseline is
/// `tools/bench/udp-echo-server.c`.
///
/// Flags: `--host IP` (127.0.0.1), `--port P` (9999), `--batch N` (64),
/// `--threads N` (1; more loops share the port with SO_REUSEPORT).
/// Prints `listening udp-echo HOST:PORT` when ready, runs until SIGINT or
/// SIGTERM, then prints one JSON line with the packet counts.
public enum UDPEchoBench {
    final class Echo: UDPSocketHandler {
        var packets = 0
        func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
            let out = socket.sendBatch
            for i in 0..<batch.count {
                let d = batch[i]
                out.appendNoCopy(d.bytes, to: d.source)
            }
            out.flush()
            packets &+= batch.count
        }
    }

    /// Runs the echo server; returns the process exit code. Blocks until a
    /// shutdown signal.
    public static func run(args: [String]) -> Int32 {
        var host = "127.0.0.1", port: UInt16 = 9999, batch = 64, threads = 1
        var i = 0
        func value() -> String? { i += 1; return i < args.count ? args[i] : nil }
        while i < args.count {
            switch args[i] {
            case "--host": host = value() ?? host
            case "--port": guard let v = value().flatMap({ UInt16($0) }) else { return usage() }; port = v
            case "--batch": guard let v = value().flatMap({ Int($0) }), v > 0, v <= 1024 else { return usage() }; batch = v
            case "--threads": guard let v = value().flatMap({ Int($0) }), v > 0 else { return usage() }; threads = v
            case "--help", "-h": _ = usage(); return 0
            default: return usage()
            }
            i += 1
        }
        guard let address = SocketAddress(ip: host, port: port) else {
            say("udp-echo: bad host \(host)\n", fd: 2)
            return 2
        }
        do {
            let group = try EventLoopGroup(numberOfThreads: threads, shutdownSignals: [SIGINT, SIGTERM])
            var options = UDPSocket.Options()
            options.batchSize = batch
            options.reusePort = threads > 1
            let opts = options
            var handlers: [Echo] = []
            for loop in group.loops {
                let h = try loop.submit { () -> Echo in
                    let h = Echo()
                    _ = try UDPSocket(loop: loop, bindTo: address, options: opts, handler: h)
                    return h
                }
                handlers.append(h)
            }
            say("listening udp-echo \(address)\n")
            let sig = group.waitForShutdownSignal()
            let total = handlers.reduce(0) { $0 + $1.packets }
            say("{\"echoed\":\(total),\"signal\":\(sig ?? 0)}\n")
            return 0
        } catch {
            say("udp-echo: \(error)\n", fd: 2)
            return 1
        }
    }

    private static func say(_ text: String, fd: Int32 = 1) {
        var t = text
        t.withUTF8 { b in _ = Glibc.write(fd, b.baseAddress, b.count) }
    }

    private static func usage() -> Int32 {
        say("usage: parley bench udp-echo [--host IP] [--port P] [--batch N] [--threads N]\n", fd: 2)
        return 2
    }
}
