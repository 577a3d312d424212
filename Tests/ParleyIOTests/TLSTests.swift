import XCTest
import Foundation
import Glibc
@testable import ParleyIO
import ParleyTestSupport

final class TLSTests: XCTestCase {
    var dir = ""

    /// A pin is 64 hex digits, either case, colons optional; it is kept as `openssl x509 -fingerprint` prints it.
    func testAPinIs64HexDigitsColonsOptional() throws {
        let printed = String(repeating: "AB:", count: 31) + "AB"
        XCTAssertEqual(try TLSContext.client(pinnedSHA256: String(repeating: "ab", count: 32)).pinnedSHA256, printed)
        XCTAssertEqual(try TLSContext.client(pinnedSHA256: printed.lowercased()).pinnedSHA256, printed)
        for bad in [String(repeating: "ab", count: 31), String(repeating: "zz", count: 32), printed + ":AB", "A" + printed] {
            XCTAssertThrowsError(try TLSContext.client(pinnedSHA256: bad), bad)
        }
    }

    override func setUpWithError() throws {
        raiseFDLimit()
        dir = NSTemporaryDirectory() + "parley-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Runs `argv` (looked up on PATH); `out` is stdout followed by stderr.
    func run(_ argv: [String]) throws -> (status: Int32, out: String) {
        let r = try runTool(argv[0], Array(argv.dropFirst()))
        return (r.status, r.out + r.err)
    }

    func testSelfSignedCertificateMatchesOpenSSLCommandLine() throws {
        let g = try TLSCertificate.generateSelfSigned(directory: dir + "/tls")
        var st = stat()
        XCTAssertEqual(stat(g.privateKeyFile, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let fp = try run(["openssl", "x509", "-in", g.certificateFile, "-noout", "-fingerprint", "-sha256"])
        XCTAssertEqual(fp.status, 0)
        XCTAssertEqual(fp.out.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "=").last,
                       g.sha256Fingerprint)
        XCTAssertEqual(g.sha256Fingerprint.count, 32 * 3 - 1)
        XCTAssertEqual(try TLSCertificate.sha256Fingerprint(ofPEMFile: g.certificateFile), g.sha256Fingerprint)
        let text = try run(["openssl", "x509", "-in", g.certificateFile, "-noout", "-text"]).out
        XCTAssertTrue(text.contains("DNS:localhost"), text)
        XCTAssertTrue(text.contains("IP Address:127.0.0.1"), text)
        XCTAssertTrue(text.contains("prime256v1") || text.contains("P-256"), text)
        XCTAssertTrue(text.contains("ecdsa-with-SHA256"), text)
        // The key really belongs to the certificate.
        let check = try run(["openssl", "pkey", "-in", g.privateKeyFile, "-pubout"]).out
        let pub = try run(["openssl", "x509", "-in", g.certificateFile, "-noout", "-pubkey"]).out
        XCTAssertEqual(check, pub)
    }

    func startTLSEchoServer(_ g: TLSCertificate.Generated, stats: EchoStats) throws -> (EventLoopGroup, TCPListener) {
        let server = try EventLoopGroup(numberOfThreads: 1)
        let tls = try TLSContext.server(certificateChainFile: g.certificateFile, privateKeyFile: g.privateKeyFile)
        let loop = server.next()
        let listener = try loop.submit {
            // The same echo handler as the plain TCP test: TLS does not change handler code.
            try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0), tls: tls) { TCPEchoHandler(stats) }
        }
        return (server, listener)
    }

    func testTLSEchoWithParleyClient() throws {
        let g = try TLSCertificate.generateSelfSigned(directory: dir)
        let stats = EchoStats()
        let (server, listener) = try startTLSEchoServer(g, stats: stats)
        let client = try EventLoopGroup(numberOfThreads: 1)
        let tls = try TLSContext.client(trustedCertificatesFile: g.certificateFile, serverName: "localhost")
        let connections = 40, perConnection = 256 * 1024 + 17
        let takenOverBefore = TCPMetrics.shared.tlsTakenOver.current
        let all = expectation(description: "clients done")
        all.expectedFulfillmentCount = connections
        let results = ClientResults(all)
        let cloop = client.next()
        try cloop.submit {
            for i in 0..<connections {
                _ = try TCPConnection.connect(to: listener.localAddress, on: cloop, tls: tls,
                                              handler: EchoClient(seed: i, total: perConnection, results: results))
            }
        }
        wait(for: [all], timeout: 90)
        let r = results.lock.withLock { $0 }
        XCTAssertEqual(r.bad, 0, "\(r.reasons)")
        XCTAssertEqual(r.bytes, connections * perConnection)
        waitUntil("server closed") { stats.closed.load(ordering: .relaxed) == connections }
        XCTAssertEqual(stats.otherReasons.withLock { $0 }, [])
        // Every one of them through Parley's TLS 1.3 record layer (records split across reads).
        XCTAssertGreaterThanOrEqual(TCPMetrics.shared.tlsTakenOver.current - takenOverBefore, connections)
        try listener.loop.submit { listener.close() }
        server.syncShutdownGracefully()
        client.syncShutdownGracefully()
    }

    /// A peer nobody here wrote: CPython's ssl module (OpenSSL underneath,
    /// but its own handshake driving, SNI, hostname check and unwrap).
    func testTLSEchoWithPythonPeer() throws {
        let g = try TLSCertificate.generateSelfSigned(directory: dir)
        let stats = EchoStats()
        let (server, listener) = try startTLSEchoServer(g, stats: stats)
        defer { server.syncShutdownGracefully() }
        let script = """
        import socket, ssl, sys, hashlib
        port, ca = int(sys.argv[1]), sys.argv[2]
        ctx = ssl.create_default_context(cafile=ca)
        data = bytes((i * 7 + 3) % 251 for i in range(300000))
        with socket.create_connection(("127.0.0.1", port)) as s:
            t = ctx.wrap_socket(s, server_hostname="localhost")
            t.sendall(data)
            got = bytearray()
            while len(got) < len(data):
                chunk = t.recv(65536)
                if not chunk: break
                got += chunk
            version = t.version()
            t.unwrap()  # close_notify both ways
            print("echo", "ok" if bytes(got) == data else "MISMATCH", len(got), version)
        """
        let path = dir + "/peer.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try run(["python3", path, String(listener.localAddress.port), g.certificateFile])
        XCTAssertEqual(r.status, 0, r.out)
        XCTAssertTrue(r.out.hasPrefix("echo ok 300000 TLSv1.3"), r.out)
        waitUntil("server closed") { stats.closed.load(ordering: .relaxed) == 1 }
        XCTAssertEqual(stats.otherReasons.withLock { $0 }, [])
        try listener.loop.submit { listener.close() }
    }

    /// `openssl s_client` completes a verified handshake against the server.
    func testOpenSSLSClientVerifiesServer() throws {
        let g = try TLSCertificate.generateSelfSigned(directory: dir)
        let stats = EchoStats()
        let (server, listener) = try startTLSEchoServer(g, stats: stats)
        defer { server.syncShutdownGracefully() }
        let r = try run(["sh", "-c", "openssl s_client -connect 127.0.0.1:\(listener.localAddress.port) -servername localhost -verify_hostname localhost -CAfile \(g.certificateFile) -verify_return_error < /dev/null"])
        XCTAssertEqual(r.status, 0, r.out)
        XCTAssertTrue(r.out.contains("Verify return code: 0 (ok)"), r.out)
        XCTAssertTrue(r.out.contains("CN = localhost") || r.out.contains("CN=localhost"), r.out)
        try listener.loop.submit { listener.close() }
    }

    func testUntrustedServerFailsHandshakeWithTLSReason() throws {
        let g = try TLSCertificate.generateSelfSigned(directory: dir + "/a")
        let other = try TLSCertificate.generateSelfSigned(directory: dir + "/b")
        let stats = EchoStats()
        let (server, listener) = try startTLSEchoServer(g, stats: stats)
        defer { server.syncShutdownGracefully() }
        let client = try EventLoopGroup(numberOfThreads: 1)
        defer { client.syncShutdownGracefully() }
        let tls = try TLSContext.client(trustedCertificatesFile: other.certificateFile, serverName: "localhost")
        let reason = Shared<TCPCloseReason?>(nil)
        let loop = client.next()
        _ = try loop.submit {
            try TCPConnection.connect(to: listener.localAddress, on: loop, tls: tls, handler: CloseRecorder(reason))
        }
        waitUntil("handshake failure") { reason.value != nil }
        guard case .tls(let message)? = reason.value else { return XCTFail("\(String(describing: reason.value))") }
        XCTAssertTrue(message.contains("certificate verify failed"), message)
        try listener.loop.submit { listener.close() }
    }
}
