import Foundation
import XCTest
import ParleyTestSupport

/// `parley serve` as an operator runs it: a real process, readiness lines on
/// stdout, HTTP answers, and a clean stop on SIGINT and SIGTERM.
final class ServeProcessTests: XCTestCase {

    func startServe(dataDir: String, insecure: Bool = true, extra: [String] = []) throws -> (Process, [String], FileHandle) {
        try ParleyTestSupport.startServe(dataDir: dataDir, insecure: insecure, extra: extra)
    }

    func httpGet(_ port: Int, _ path: String) throws -> String { try http(port, "GET", path) }

    func http(_ port: Int, _ method: String, _ path: String, body: String = "", header: String? = nil) throws -> String {
        try httpRequest(port, method, path, body: body, headers: header.map { [$0] } ?? [])
    }

    func testServeAnswersHealthAndMetricsAndStopsCleanlyOnSignals() throws {
        for sig in [SIGINT, SIGTERM] {
            let dir = NSTemporaryDirectory() + "parley-serve-\(getpid())-\(sig)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let (p, lines, _) = try startServe(dataDir: dir)
            guard let httpLine = lines.first(where: { $0.hasPrefix("listening http ") }) else {
                p.terminate(); p.waitUntilExit()
                return XCTFail("no `listening http` line; got \(lines)")
            }
            XCTAssertEqual(lines.filter { $0.hasPrefix("listening media ") }.count, 2, "\(lines)")
            XCTAssertTrue(lines.contains { $0.hasPrefix("listening stun 127.0.0.1:") }, "\(lines)")
            let port = Int(httpLine.split(separator: ":").last!)!
            let health = try httpGet(port, "/healthz")
            XCTAssertTrue(health.hasPrefix("HTTP/1.1 200"), health)
            XCTAssertTrue(health.contains(#""status":"ok""#), health)
            let metrics = try httpGet(port, "/metrics")
            XCTAssertTrue(metrics.contains("# TYPE "), metrics)
            XCTAssertTrue(metrics.contains("text/plain; version=0.0.4"), metrics)
            kill(p.processIdentifier, sig)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .exit, "signal \(sig) must lead to a clean exit, not a kill")
            XCTAssertEqual(p.terminationStatus, 0)
        }
    }

    /// Without --insecure the listener speaks TLS with a self-signed
    /// certificate made on first start; curl (a client we did not write)
    /// pinned to that certificate gets /healthz.
    func testServeDefaultsToTLSWithASelfSignedCertificate() throws {
        let dir = NSTemporaryDirectory() + "parley-serve-tls-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (p, lines, _) = try startServe(dataDir: dir, insecure: false)
        defer { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() }
        guard let line = lines.first(where: { $0.hasPrefix("listening https ") }) else { return XCTFail("\(lines)") }
        let fp = lines.first { $0.hasPrefix("tls certificate ") }?.split(separator: " ").last.map(String.init)
        XCTAssertEqual(fp?.count, 95, "SHA-256 fingerprint as AB:CD:…: \(lines)")
        let port = line.split(separator: ":").last!
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-s", "--cacert", dir + "/tls/cert.pem", "https://127.0.0.1:\(port)/healthz"]
        let out = Pipe()
        curl.standardOutput = out
        try curl.run()
        let body = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        curl.waitUntilExit()
        XCTAssertEqual(curl.terminationStatus, 0, "curl verifies the certificate it was given")
        XCTAssertTrue(body.contains(#""status":"ok""#), body)
    }

    /// The transcoding job API and the HLS file route on the daemon's listener,
    /// with a token minted by `parley token --can-transcode` and the samples
    /// directory as the one transcode input directory.
    func testJobsAPIQueuesValidJobsAndRefusesBadOnes() throws {
        let dir = NSTemporaryDirectory() + "parley-serve-jobs-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let samples = repositoryPath("samples")
        let (p, lines, _) = try startServe(dataDir: dir, extra: ["--transcode-input-dirs", samples])
        defer { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() }
        guard let line = lines.first(where: { $0.hasPrefix("listening http ") }) else { return XCTFail("\(lines)") }
        let port = Int(line.split(separator: ":").last!)!
        let minted = try runTool(parleyBinary, ["token", "--user", "encoder", "--can-transcode", "--data-dir", dir])
        XCTAssertEqual(minted.status, 0, minted.err)
        let auth = "Authorization: Bearer " + minted.out.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(try http(port, "POST", "/jobs", body: #"{"input":"sample-720p-12s.mp4"}"#).hasPrefix("HTTP/1.1 401"))
        XCTAssertTrue(try http(port, "POST", "/jobs", body: "not json", header: auth).hasPrefix("HTTP/1.1 400"))
        let missing = try http(port, "POST", "/jobs", body: #"{"input":"nonexistent.mp4"}"#, header: auth)
        let outside = try http(port, "POST", "/jobs", body: #"{"input":"\#(samples)/sample-720p-12s.mp4"}"#, header: auth)
        XCTAssertTrue(missing.hasPrefix("HTTP/1.1 400"), missing)
        XCTAssertEqual(missing.components(separatedBy: "\r\n\r\n").last, outside.components(separatedBy: "\r\n\r\n").last)
        let bad = try http(port, "POST", "/jobs", body: #"{"input":"sample-720p-12s.mp4","segment_seconds":0}"#, header: auth)
        XCTAssertTrue(bad.hasPrefix("HTTP/1.1 400") && bad.contains("segment_seconds"), bad)
        let ok = try http(port, "POST", "/jobs", body: #"{"input":"sample-720p-12s.mp4","ladder":"360p:365k"}"#, header: auth)
        XCTAssertTrue(ok.hasPrefix("HTTP/1.1 202"), ok)
        XCTAssertTrue(ok.contains(#""state":"queued""#), ok)
        let job = try http(port, "GET", "/jobs/1", header: auth)
        XCTAssertTrue(job.hasPrefix("HTTP/1.1 200") && job.contains("360p:365k"), job)
        XCTAssertFalse(job.contains(samples), "no server paths: \(job)")
        XCTAssertTrue(try http(port, "GET", "/jobs/99", header: auth).hasPrefix("HTTP/1.1 404"))
        XCTAssertTrue(try httpGet(port, "/hls/../../etc/passwd").hasPrefix("HTTP/1.1 401"))
        XCTAssertTrue(try http(port, "GET", "/hls/../../etc/passwd", header: auth).hasPrefix("HTTP/1.1 404"))
    }

    func testBadConfigExitsWithUsageCode() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: parleyBinary)
        p.arguments = ["serve", "--listen", "nohost"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 2)
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(text.contains("listen"), text)
    }

    // MARK: Startup failures: one line, exit 1, no readiness lines

    /// Binds 127.0.0.1:0 (UDP or TCP, listening) and returns the fd and its port.
    func holdPort(udp: Bool) throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32((udp ? SOCK_DGRAM : SOCK_STREAM).rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &addr) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                guard bind(fd, sa, len) == 0, udp || listen(fd, 8) == 0, getsockname(fd, sa, &len) == 0 else {
                    throw POSIXError(.EADDRINUSE)
                }
            }
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// Runs `parley serve` to completion (it must not start).
    func serveMustFail(_ args: [String], dataDir: String) throws -> (status: Int32, out: String, err: String) {
        try runTool(parleyBinary, ["serve", "--data-dir", dataDir, "--loops", "1", "--insecure"] + args, timeout: 30)
    }

    /// A busy port: media crashed the daemon (exit 139 in Relay.init), HTTP
    /// and STUN said "bind: Address already in use" without naming the
    /// address, and the media/STUN `listening` lines were already printed.
    func testABusyPortExitsOneWithOneLineNamingTheAddressAndNoReadinessLines() throws {
        let dir = tempDir("busy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (udp, udpPort) = try holdPort(udp: true)
        defer { close(udp) }
        let (tcp, tcpPort) = try holdPort(udp: false)
        defer { close(tcp) }
        let free = "--media-ports"
        let cases: [(String, [String], String)] = [
            ("media", [free, "\(udpPort)-\(udpPort)", "--listen", "127.0.0.1:0", "--stun", "127.0.0.1:0"], "media 127.0.0.1:\(udpPort)"),
            ("stun", [free, "\(tcpPort)-\(tcpPort)", "--listen", "127.0.0.1:0", "--stun", "127.0.0.1:\(udpPort)"], "stun 127.0.0.1:\(udpPort)"),
            ("http", [free, "\(tcpPort)-\(tcpPort)", "--listen", "127.0.0.1:\(tcpPort)", "--stun", "127.0.0.1:0"], "http 127.0.0.1:\(tcpPort)"),
        ]
        for (what, args, named) in cases {
            let r = try serveMustFail(args, dataDir: dir)
            XCTAssertEqual(r.status, 1, "\(what): \(r.err)")
            XCTAssertEqual(r.err, "parley serve: \(named): address already in use\n", what)
            XCTAssertFalse(r.out.contains("listening"), "\(what): no readiness line for a daemon that did not start: \(r.out)")
        }
    }

    /// Two daemons on one data dir both started; the second now exits 1
    /// naming the dir and the first one's pid.
    func testASecondServeOnTheSameDataDirExitsNamingTheHolder() throws {
        let dir = tempDir("lock")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (first, lines, _) = try startServe(dataDir: dir)
        defer { kill(first.processIdentifier, SIGTERM); first.waitUntilExit() }
        XCTAssertTrue(lines.contains { $0.hasPrefix("listening http ") }, "\(lines)")
        let r = try serveMustFail(["--listen", "127.0.0.1:0", "--stun", "off", "--media-ports", "20000-29999"], dataDir: dir)
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertEqual(r.err, "parley serve: data dir \(dir) is in use by another server (pid \(first.processIdentifier))\n")
        XCTAssertFalse(r.out.contains("listening"), r.out)
    }

    /// A trailing comma in parley.json was accepted (Foundation's lenient
    /// parser); typos in keys and flags gave no hint.
    func testStrictConfigFileAndTypoSuggestions() throws {
        let dir = tempDir("strict")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/parley.json"
        try "{\n  \"listen\": \"127.0.0.1:0\",\n  \"loops\": 1,\n}\n".write(toFile: file, atomically: true, encoding: .utf8)
        var r = try runTool(parleyBinary, ["serve", "--config", file, "--data-dir", dir])
        XCTAssertEqual(r.status, 2, r.err)
        XCTAssertEqual(r.err, "parley serve: config: \(file):4:1: invalid JSON: expected a key\n")
        try #"{"lisen": "127.0.0.1:0"}"#.write(toFile: file, atomically: true, encoding: .utf8)
        r = try runTool(parleyBinary, ["serve", "--config", file, "--data-dir", dir])
        XCTAssertEqual(r.status, 2, r.err)
        XCTAssertEqual(r.err, "parley serve: config: unknown key \"lisen\"; did you mean \"listen\"? (in \(file))\n")
        r = try runTool(parleyBinary, ["serve", "--media-port", "7710-7711"])
        XCTAssertEqual(r.status, 2, r.err)
        XCTAssertEqual(r.err, "parley serve: unknown option --media-port; did you mean --media-ports?\n")
        XCTAssertFalse(r.out.contains("listening"), r.out)
    }

    /// A key given twice in parley.json silently took the second value.
    func testDuplicateKeyInConfigFileExitsNamingIt() throws {
        let dir = tempDir("dupkey")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/parley.json"
        try "{\n  \"listen\": \"127.0.0.1:0\",\n  \"stun\": \"off\",\n  \"listen\": \"0.0.0.0:0\"\n}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let r = try runTool(parleyBinary, ["serve", "--config", file, "--data-dir", dir])
        XCTAssertEqual(r.status, 2, r.err)
        XCTAssertEqual(r.err, "parley serve: config: \(file):4:3: invalid JSON: duplicate key \"listen\"\n")
        XCTAssertFalse(r.out.contains("listening"), r.out)
    }

    func testEverySubcommandAnswersHelp() throws {
        for cmd in ["serve", "token", "sdp", "transcode", "worker", "bench"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: parleyBinary)
            p.arguments = [cmd, "--help"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, cmd)
            XCTAssertTrue(text.lowercased().contains("usage: parley \(cmd)"), "\(cmd): \(text)")
        }
    }
}

/// One plain HTTP/1.1 request to 127.0.0.1:`port`; the whole response.
func httpRequest(_ port: Int, _ method: String, _ path: String, body: String = "", headers: [String] = []) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    XCTAssertEqual(rc, 0)
    let extra = headers.map { $0 + "\r\n" }.joined()
    let req = Array("\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\(extra)Content-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    _ = req.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
