import Foundation
import ParleyCore
import ParleyDTLS
import ParleySRTP
import ParleyTestSupport
import XCTest

final class DTLSEndpointTests: XCTestCase {
    /// Runs two endpoints against each other in memory until both are done
    /// (or `rounds` exchanges pass); `lose` may drop a datagram by its index.
    private func handshake(_ a: DTLSEndpoint, _ b: DTLSEndpoint, rounds: Int = 20,
                           lose: (Int) -> Bool = { _ in false }) {
        var toB = a.start(), toA = b.start()
        var sent = 0
        for _ in 0..<rounds {
            var nextA: [[UInt8]] = [], nextB: [[UInt8]] = []
            for d in toB {
                sent += 1
                if lose(sent) { continue }
                nextA += d.withUnsafeBytes { b.receive($0).1 }
            }
            for d in toA {
                sent += 1
                if lose(sent) { continue }
                nextB += d.withUnsafeBytes { a.receive($0).1 }
            }
            if nextA.isEmpty && nextB.isEmpty {
                // Nothing in flight: wait for the earlier retransmission timer, and what it resends.
                guard let wait = [a.timerDelay(), b.timerDelay()].compactMap({ $0 }).min() else { break }
                let c = wait.components
                usleep(UInt32(c.seconds * 1_000_000 + c.attoseconds / 1_000_000_000_000) + 1000)
                nextB = a.handleTimer()
                nextA = b.handleTimer()
                if nextA.isEmpty && nextB.isEmpty { break }
            }
            toA = nextA
            toB = nextB
        }
    }

    private func keys(_ e: DTLSEndpoint) -> DTLSSRTPKeys? {
        if case .connected(let k) = e.state { return k }
        return nil
    }

    func testTwoEndpointsAgreeOnKeysForEachProfile() throws {
        for suite in SRTPSuite.allCases {
            let sc = try DTLSContext(certificate: .generate(), profiles: [suite])
            let cc = try DTLSContext(certificate: .generate(), profiles: [.aeadAES128GCM, .aesCM128HmacSHA1_80])
            let server = try DTLSEndpoint(context: sc, role: .server, remoteFingerprint: cc.certificate.fingerprint)
            let client = try DTLSEndpoint(context: cc, role: .client, remoteFingerprint: sc.certificate.fingerprint)
            handshake(client, server)
            let s = try XCTUnwrap(keys(server), "server: \(server.state)")
            let c = try XCTUnwrap(keys(client), "client: \(client.state)")
            XCTAssertEqual(s.suite, suite)
            XCTAssertEqual(s.local, c.remote)
            XCTAssertEqual(s.remote, c.local)
            XCTAssertNotEqual(s.local, s.remote)
            XCTAssertEqual(s.local.masterSalt.count, suite.saltLength)
        }
    }

    func testServerPrefersGCM() throws {
        let sc = try DTLSContext(certificate: .generate())
        let cc = try DTLSContext(certificate: .generate(), profiles: [.aesCM128HmacSHA1_80, .aeadAES128GCM])
        let server = try DTLSEndpoint(context: sc, role: .server, remoteFingerprint: nil)
        let client = try DTLSEndpoint(context: cc, role: .client, remoteFingerprint: nil)
        handshake(client, server)
        XCTAssertEqual(keys(server)?.suite, .aeadAES128GCM)
    }

    func testAFingerprintThatDoesNotMatchFailsTheHandshake() throws {
        let sc = try DTLSContext(certificate: .generate())
        let cc = try DTLSContext(certificate: .generate())
        let other = try DTLSCertificate.generate()
        let server = try DTLSEndpoint(context: sc, role: .server, remoteFingerprint: other.fingerprint)
        let client = try DTLSEndpoint(context: cc, role: .client, remoteFingerprint: sc.certificate.fingerprint)
        handshake(client, server)
        XCTAssertEqual(server.state, .failed(.fingerprintMismatch))
        XCTAssertNil(keys(server))
    }

    func testLostFlightsAreRetransmittedOnTheTimer() throws {
        let sc = try DTLSContext(certificate: .generate(), initialRetransmit: .milliseconds(20))
        let cc = try DTLSContext(certificate: .generate(), initialRetransmit: .milliseconds(20))
        let server = try DTLSEndpoint(context: sc, role: .server, remoteFingerprint: nil)
        let client = try DTLSEndpoint(context: cc, role: .client, remoteFingerprint: nil)
        let first = client.start()
        XCTAssertFalse(first.isEmpty)
        XCTAssertNotNil(client.timerDelay(), "a client waiting for ServerHello has a retransmission timer")
        // The ClientHello and the server's first flight are lost once each.
        handshake(client, server, rounds: 30) { $0 == 1 || $0 == 2 }
        XCTAssertNotNil(keys(server), "\(server.state)")
        XCTAssertNotNil(keys(client), "\(client.state)")
        XCTAssertNil(server.timerDelay())
    }

    func testGarbageIsNotFedToOpenSSL() throws {
        let sc = try DTLSContext(certificate: .generate())
        let server = try DTLSEndpoint(context: sc, role: .server, remoteFingerprint: nil)
        let cases: [[UInt8]] = [
            [],
            [22],
            [22, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 8) + [0, 50], // length past the end
            [99, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 8) + [0, 0], // content type
            [22, 0x03, 0x03] + [UInt8](repeating: 0, count: 8) + [0, 0], // TLS, not DTLS
            Array("hello world, not dtls".utf8),
        ]
        for c in cases {
            let (what, out) = c.withUnsafeBytes { server.receive($0) }
            XCTAssertEqual(what, .malformed, "\(c)")
            XCTAssertEqual(out, [])
        }
        // A well-framed record that is not a ClientHello fails the handshake, which a caller then closes.
        let junk: [UInt8] = [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]
        _ = junk.withUnsafeBytes { server.receive($0) }
        if case .connected = server.state { XCTFail("junk connected") }
        XCTAssertTrue(DTLSRecords.isWellFormed(junk.withUnsafeBytes { $0 }))
    }

    func testFingerprintFormat() throws {
        let c = try DTLSCertificate.generate()
        let bytes = try XCTUnwrap(DTLSFingerprint.parse(c.fingerprint))
        XCTAssertEqual(bytes.count, 32)
        XCTAssertEqual(DTLSFingerprint.format(bytes), c.fingerprint)
        XCTAssertEqual(DTLSFingerprint.parse(c.fingerprint.lowercased()), bytes)
        XCTAssertNil(DTLSFingerprint.parse("AB:CD"))
        XCTAssertNil(DTLSFingerprint.parse(String(repeating: "ZZ:", count: 31) + "ZZ"))
    }

    /// `openssl s_client -dtls1_2 -use_srtp` (a DTLS implementation nobody
    /// here wrote) handshakes with a server endpoint over a real UDP socket,
    /// and exports the same keying material (`-keymatexport`).
    func testOpenSSLClientHandshakesAndExportsTheSameKeys() throws {
        for suite in SRTPSuite.allCases {
            try checkOpenSSLClient(suite)
        }
    }

    private func checkOpenSSLClient(_ suite: SRTPSuite) throws {
        let dir = tempDir("dtls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gen = try runTool("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                          "-subj", "/CN=peer", "-days", "1", "-keyout", "\(dir)/k.pem", "-out", "\(dir)/c.pem"])
        XCTAssertEqual(gen.status, 0, gen.err)
        let fp = try runTool("openssl", ["x509", "-in", "\(dir)/c.pem", "-noout", "-fingerprint", "-sha256"])
        let peerFingerprint = try XCTUnwrap(fp.out.split(separator: "=").last).trimmingCharacters(in: .whitespacesAndNewlines)

        let ctx = try DTLSContext(certificate: .generate())
        let server = try DTLSEndpoint(context: ctx, role: .server, remoteFingerprint: peerFingerprint)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: addr.sin_port)

        // The server side runs on its own thread: datagrams in, datagrams back to the sender, timers.
        let done = Gate()
        let serverThread = Thread {
            var peer = sockaddr_in()
            var peerLen = socklen_t(MemoryLayout<sockaddr_in>.size)
            var buf = [UInt8](repeating: 0, count: 2048)
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ms = server.timerDelay().map { Int32($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) } ?? 200
                var out: [[UInt8]] = []
                if poll(&p, 1, Swift.max(1, Swift.min(ms, 200))) == 1 {
                    let n = withUnsafeMutablePointer(to: &peer) { pp in
                        pp.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &peerLen) }
                    }
                    if n > 0 { out = buf.withUnsafeBytes { server.receive(UnsafeRawBufferPointer(rebasing: $0[0..<n])).1 } }
                } else if server.timerDelay() != nil {
                    out = server.handleTimer()
                }
                for d in out {
                    _ = withUnsafePointer(to: &peer) { pp in
                        pp.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, d, d.count, 0, $0, peerLen) }
                    }
                }
                if case .handshaking = server.state { continue }
                break
            }
            done.open()
        }
        serverThread.start()
        let r = try runTool("openssl", ["s_client", "-dtls1_2", "-connect", "127.0.0.1:\(port)", "-use_srtp", suite.dtlsProfileName,
                                        "-cert", "\(dir)/c.pem", "-key", "\(dir)/k.pem",
                                        "-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen", "\(2 * (suite.keyLength + suite.saltLength))"],
                            timeout: 30, stdin: "")
        done.wait()
        let k = try XCTUnwrap(keys(server), "server \(server.state); s_client: \(r.out) \(r.err)")
        XCTAssertEqual(k.suite, suite)
        XCTAssertTrue(r.out.contains("SRTP Extension negotiated, profile=\(suite.dtlsProfileName)"), r.out)
        // s_client prints the exported material as hex: client key ‖ server key ‖ client salt ‖ server salt.
        let line = try XCTUnwrap(r.out.split(separator: "\n").first { $0.contains("Keying material:") })
        let hex = String(line.split(separator: ":").last!).trimmingCharacters(in: .whitespaces).uppercased()
        let ks = suite.keyLength, ss = suite.saltLength
        func h(_ b: [UInt8]) -> String { b.map { String(format: "%02X", $0) }.joined() }
        XCTAssertEqual(hex, h(k.remote.masterKey) + h(k.local.masterKey) + h(k.remote.masterSalt) + h(k.local.masterSalt),
                       "key lengths \(ks)/\(ss)")
    }
}
