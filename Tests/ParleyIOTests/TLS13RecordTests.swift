import XCTest
import Foundation
import Glibc
import Synchronization
import ParleyCore
@testable import ParleyIO
import ParleyTestSupport

/// Server side of the take-over tests: echoes, and notes whether Parley's
/// record layer (not an `SSL`) carried the connection when data arrived.
final class TakeOverEchoHandler: TCPConnectionHandler, @unchecked Sendable {
    let stats: EchoStats
    let takenOver: Shared<[Bool]>
    init(_ stats: EchoStats, _ takenOver: Shared<[Bool]>) { self.stats = stats; self.takenOver = takenOver }
    private var noted = false
    func connection(_ c: TCPConnection, didRead bytes: UnsafeRawBufferPointer) {
        if !noted {
            noted = true
            let t = (c.layer as? TLSSession)?.protectsRecords ?? false
            takenOver.update { $0.append(t) }
        }
        c.write(bytes)
    }
    func connection(_ c: TCPConnection, didCloseWith reason: TCPCloseReason) {
        stats.closed.add(1, ordering: .relaxed)
        if reason != .peer { stats.otherReasons.withLock { $0.append(reason) } }
    }
}

final class TLS13RecordTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "parley-tls13-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    static func hex(_ s: String) -> [UInt8] { Hex.decode(s.filter { !$0.isWhitespace }.utf8)! }

    // MARK: Keys and records

    /// RFC 8448 §3 (simple 1-RTT handshake): the application traffic keys and IVs.
    func testKeysFromTheRFC8448TrafficSecrets() {
        let server = Self.hex("a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43")
        let client = Self.hex("9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5")
        XCTAssertEqual(TLS13RecordProtection.hkdfExpandLabel(secret: server, label: "key", length: 16, sha384: false),
                       Self.hex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"))
        XCTAssertEqual(TLS13RecordProtection.hkdfExpandLabel(secret: server, label: "iv", length: 12, sha384: false),
                       Self.hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84"))
        XCTAssertEqual(TLS13RecordProtection.hkdfExpandLabel(secret: client, label: "key", length: 16, sha384: false),
                       Self.hex("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"))
        XCTAssertEqual(TLS13RecordProtection.hkdfExpandLabel(secret: client, label: "iv", length: 12, sha384: false),
                       Self.hex("5b 78 92 3d ee 08 57 90 33 e5 23 d9"))
    }

    /// The two ends of one connection: the server reads with the client's secret and writes with its own.
    func pair(_ suite: TLS13RecordProtection.Suite) -> (server: TLS13RecordProtection, client: TLS13RecordProtection) {
        let c = (0..<suite.secretLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        let s = (0..<suite.secretLength).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        return (TLS13RecordProtection(suite: suite, readSecret: c, writeSecret: s)!,
                TLS13RecordProtection(suite: suite, readSecret: s, writeSecret: c)!)
    }

    func seal(_ p: inout TLS13RecordProtection, type: UInt8 = 23, _ bytes: [UInt8], _ cipher: TLS13Cipher) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count + 22)
        let n = out.withUnsafeMutableBytes { o in bytes.withUnsafeBytes { p.seal(type: type, $0, into: o.baseAddress!, cipher: cipher) } }
        return Array(out.prefix(n!))
    }

    /// Opens the record at the start of `record`; nil when it is not all there.
    func open(_ p: inout TLS13RecordProtection, _ record: [UInt8], _ cipher: TLS13Cipher) throws -> (UInt8, [UInt8])? {
        try record.withUnsafeBytes { r in
            guard let length = try TLS13RecordProtection.recordLength(r) else { return nil }
            let (type, count) = try p.open(UnsafeRawBufferPointer(rebasing: r[0..<length]), into: cipher.readScratch, cipher: cipher)
            return (type, Array(UnsafeRawBufferPointer(start: cipher.readScratch, count: count)))
        }
    }

    func testSealedRecordsOpenInOrderForEverySuite() throws {
        let cipher = TLS13Cipher()
        for suite in [TLS13RecordProtection.Suite.aes128GCM, .aes256GCM, .chacha20Poly1305] {
            var (server, client) = pair(suite)
            for size in [0, 1, 100, 16_384] {
                let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
                let record = seal(&server, data, cipher)
                XCTAssertEqual(record.count, size + 22)
                XCTAssertEqual(Array(record.prefix(3)), [23, 3, 3])
                let opened = try open(&client, record, cipher)
                XCTAssertEqual(opened?.0, 23, "\(suite)")
                XCTAssertEqual(opened?.1, data, "\(suite) \(size)")
                let back = seal(&client, data, cipher)
                XCTAssertEqual(try open(&server, back, cipher)?.1, data)
            }
            XCTAssertEqual(server.writeSequence, 4)
            XCTAssertEqual(server.readSequence, 4)
            // A record that is not all there yet is not opened.
            let record = seal(&server, [1, 2, 3], cipher)
            XCTAssertNil(try open(&client, Array(record.dropLast()), cipher))
            XCTAssertNil(try open(&client, Array(record.prefix(4)), cipher))
            XCTAssertEqual(try open(&client, record, cipher)?.1, [1, 2, 3])
        }
    }

    func refusal(_ p: inout TLS13RecordProtection, _ record: [UInt8], _ cipher: TLS13Cipher) -> UInt8? {
        do { _ = try open(&p, record, cipher); return nil } catch { return (error as? TLS13RecordError)?.alert ?? 255 }
    }

    /// A flipped bit anywhere, a replay, a reorder, a foreign type, a record
    /// too long or too short: each refused with its alert, never opened.
    func testTamperedReplayedReorderedAndMalformedRecordsAreRefused() throws {
        let cipher = TLS13Cipher()
        var (server, client) = pair(.aes128GCM)
        let data = Array("hello, record layer".utf8)
        let record = seal(&server, data, cipher)
        // legacy_record_version (bytes 1, 2) is not checked (RFC 8446 §5.1); a
        // changed length (3, 4) waits for more bytes or cuts the tag off.
        for i in 0..<record.count where ![1, 2, 3, 4].contains(i) {
            var bad = record
            bad[i] ^= 0x01
            var reader = client
            let alert = refusal(&reader, bad, cipher)
            XCTAssertNotNil(alert, "byte \(i) flipped was accepted")
            XCTAssertEqual(reader.readSequence, 0)
        }
        // Replay and reorder: the sequence number is in the nonce.
        let first = record, second = seal(&server, data, cipher)
        var reader = client
        XCTAssertEqual(refusal(&reader, second, cipher), TLS13RecordError.badRecordMAC)
        reader = client
        XCTAssertEqual(try open(&reader, first, cipher)?.1, data)
        XCTAssertEqual(refusal(&reader, first, cipher), TLS13RecordError.badRecordMAC)
        // Outer type other than application_data (a change_cipher_spec after the handshake).
        XCTAssertEqual(refusal(&client, [20, 3, 3, 0, 1, 1], cipher), TLS13RecordError.unexpectedMessage)
        // Longer than 2^14 + 256: refused from the header alone.
        XCTAssertEqual(refusal(&client, [23, 3, 3, 0x41, 0x01], cipher), TLS13RecordError.recordOverflow)
        // Shorter than its tag.
        XCTAssertEqual(refusal(&client, [23, 3, 3, 0, 16] + [UInt8](repeating: 0, count: 16), cipher), TLS13RecordError.decodeError)
        // All padding (no content type).
        var writer = server
        let padding = seal(&writer, type: 0, [0, 0, 0], cipher)
        reader = client
        _ = try open(&reader, first, cipher); _ = try open(&reader, second, cipher)
        XCTAssertEqual(refusal(&reader, padding, cipher), TLS13RecordError.unexpectedMessage)
    }

    /// Random bytes behind a valid header: never opened, never a crash.
    func testRandomRecordsAreNeverOpened() {
        let cipher = TLS13Cipher()
        var (_, client) = pair(.chacha20Poly1305)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let length = Int.random(in: 0...(TLS13RecordProtection.maxCiphertext + 40), using: &rng)
            var record: [UInt8] = [Bool.random() ? 23 : UInt8.random(in: 0...255), 3, 3, UInt8(length >> 8), UInt8(length & 0xff)]
            record += SecureRandom.bytes(length)
            if let opened = try? open(&client, record, cipher) { XCTFail("random bytes opened: \(opened)") }
        }
        XCTAssertEqual(client.readSequence, 0)
    }

    // MARK: Real peers

    func startServer(_ g: TLSCertificate.Generated, recordLayer: TLSRecordLayer = .parley, suites: String? = nil,
                     stats: EchoStats, takenOver: Shared<[Bool]>) throws -> (EventLoopGroup, TCPListener) {
        let server = try EventLoopGroup(numberOfThreads: 1)
        let tls = try TLSContext.server(certificateChainFile: g.certificateFile, privateKeyFile: g.privateKeyFile,
                                        recordLayer: recordLayer)
        if let suites { XCTAssertTrue(tls.setTLS13CipherSuites(suites)) }
        let loop = server.next()
        let listener = try loop.submit {
            try TCPListener(loop: loop, bindTo: .ipv4Loopback(port: 0), tls: tls) { TakeOverEchoHandler(stats, takenOver) }
        }
        return (server, listener)
    }

    /// CPython's ssl: 300,000 bytes each way and close_notify both ways, for
    /// each TLS 1.3 suite (the server offers only that one), then a TLS 1.2
    /// client (stays with OpenSSL), then the `openssl` record layer.
    func testPythonPeerEchoesThroughEverySuiteAndTLS12() throws {
        let g = try TLSCertificate.generateSelfSigned(directory: dir)
        let script = """
        import socket, ssl, sys
        port, ca, maxv = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        ctx = ssl.create_default_context(cafile=ca)
        if maxv == "1.2": ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        data = bytes((i * 7 + 3) % 251 for i in range(300000))
        with socket.create_connection(("127.0.0.1", port)) as s:
            t = ctx.wrap_socket(s, server_hostname="localhost")
            t.sendall(data[:5])
            got = bytearray()
            while len(got) < 5: got += t.recv(65536)
            t.sendall(data[5:])
            while len(got) < len(data):
                chunk = t.recv(65536)
                if not chunk: break
                got += chunk
            version, cipher = t.version(), t.cipher()[0]
            t.unwrap()  # close_notify both ways
            print("echo", "ok" if bytes(got) == data else "MISMATCH", len(got), version, cipher)
        """
        let path = dir + "/peer.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let cases: [(TLSRecordLayer, String?, String, String, Bool)] = [
            (.parley, "TLS_AES_128_GCM_SHA256", "1.3", "TLSv1.3 TLS_AES_128_GCM_SHA256", true),
            (.parley, "TLS_AES_256_GCM_SHA384", "1.3", "TLSv1.3 TLS_AES_256_GCM_SHA384", true),
            (.parley, "TLS_CHACHA20_POLY1305_SHA256", "1.3", "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256", true),
            (.parley, nil, "1.2", "TLSv1.2", false),
            (.openssl, nil, "1.3", "TLSv1.3", false),
        ]
        for (layer, suites, maxv, expect, parleyRecords) in cases {
            let stats = EchoStats()
            let takenOver = Shared<[Bool]>([])
            let (server, listener) = try startServer(g, recordLayer: layer, suites: suites, stats: stats, takenOver: takenOver)
            defer { server.syncShutdownGracefully() }
            let r = try runTool("python3", [path, String(listener.localAddress.port), g.certificateFile, maxv])
            XCTAssertEqual(r.status, 0, r.out + r.err)
            XCTAssertTrue(r.out.hasPrefix("echo ok 300000 \(expect)"), "\(layer) \(maxv): " + r.out + r.err)
            waitUntil("server closed") { stats.closed.load(ordering: .relaxed) == 1 }
            XCTAssertEqual(stats.otherReasons.withLock { $0 }, [])
            XCTAssertEqual(takenOver.value, [parleyRecords], "\(layer) \(maxv)")
            try listener.loop.submit { listener.close() }
        }
    }

    /// `openssl s_client`'s `K` command sends a KeyUpdate: the record layer
    /// refuses it and closes the connection with that reason.
    func testKeyUpdateFromOpenSSLClientIsRefusedWithAReason() throws {
        let g = try TLSCertificate.generateSelfSigned(directory: dir)
        let stats = EchoStats()
        let takenOver = Shared<[Bool]>([])
        let (server, listener) = try startServer(g, stats: stats, takenOver: takenOver)
        defer { server.syncShutdownGracefully() }
        let refusedBefore = TCPMetrics.shared.tlsRefused.current
        // s_client reads its stdin once the handshake is done; "K" alone on a line is its KeyUpdate command.
        let r = try runTool("sh", ["-c", "printf 'K\\n' | openssl s_client -connect 127.0.0.1:\(listener.localAddress.port) -tls1_3 -CAfile \(g.certificateFile)"])
        XCTAssertTrue((r.out + r.err).contains("KEYUPDATE"), r.out + r.err)
        waitUntil("server closed") { stats.closed.load(ordering: .relaxed) == 1 }
        let reasons = stats.otherReasons.withLock { $0 }
        guard case .tls(let message)? = reasons.first else { return XCTFail("\(reasons)") }
        XCTAssertTrue(message.contains("KeyUpdate refused"), message) // OpenSSL itself would have accepted it
        XCTAssertGreaterThan(TCPMetrics.shared.tlsRefused.current, refusedBefore)
        try listener.loop.submit { listener.close() }
    }
}
