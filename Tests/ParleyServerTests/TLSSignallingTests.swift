import XCTest
import ParleyTestSupport
import Foundation
import ParleyCore
import ParleyIO
@testable import ParleyServer
@testable import ParleyProtocol

/// `parley serve` without --insecure: HTTPS and WSS on a self-signed
/// certificate generated into the data dir, checked by clients nobody here
/// wrote (curl, Python's websockets over ssl) and by `parley sdp` with a
/// fingerprint pin.
final class TLSSignallingTests: XCTestCase {
    var fx: RelayServerFixture!

    override func setUpWithError() throws { fx = try RelayServerFixture(tls: true) }
    override func tearDown() { fx.stop() }

    var fingerprint: String {
        let line = fx.front.readyLines.first { $0.hasPrefix("tls certificate ") }!
        return String(line.split(separator: " ")[4])
    }

    func testSelfSignedCertificateIsGeneratedAndPrinted() throws {
        XCTAssertEqual(fx.front.scheme, "https")
        XCTAssertTrue(fx.front.readyLines.contains { $0.hasPrefix("listening https 127.0.0.1:") }, "\(fx.front.readyLines)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: fx.certificateFile))
        // The printed fingerprint is the certificate's, as openssl computes it.
        let o = try runTool("openssl", ["x509", "-in", fx.certificateFile, "-noout", "-fingerprint", "-sha256"])
        XCTAssertEqual(o.out.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "=").last.map(String.init), fingerprint)
        // curl verifies the chain against it; plain HTTP on the TLS port gets nothing useful.
        let h = try runTool("curl", ["-sS", "--cacert", fx.certificateFile, "\(fx.httpURL)/healthz"])
        XCTAssertEqual(h.out, "{\"status\":\"ok\"}\n", h.err)
        let plain = try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                         "http://127.0.0.1:\(fx.front.address.port)/healthz"])
        XCTAssertNotEqual(plain.out, "200")
    }

    func testPythonWebsocketsJoinsOverTLS() throws {
        let script = repositoryPath("tools/interop/ws_join.py")
        let r = try runTool("python3", [script, fx.wsURL, fx.token("py"), "--cafile", fx.certificateFile])
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let lines = try r.out.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(lines[0]["participant"], "py")
        XCTAssertEqual(lines[1]["srtp"]?["suite"], "AES_CM_128_HMAC_SHA1_80")
        XCTAssertNotNil(lines[1]["media"]?["port"]?.intValue)
    }

    func testSwiftClientJoinsOverTLSAndSDPPinsTheFingerprint() throws {
        let c = try fx.connect()
        try c.call(.auth(token: fx.token("alice"), room: nil))
        XCTAssertNotNil(try c.call(.join(room: nil, publish: true, subscribe: true, suite: nil))["srtp"])
        c.close()

        var o = SDPSession.Options()
        o.server = fx.wsURL
        o.token = fx.token("ffmpeg")
        XCTAssertThrowsError(try SDPSession.open(loop: fx.group.loops[0], o), "wss needs a pin or --insecure-skip-verify")
        o.fingerprint = String(repeating: "AB:", count: 31) + "AB"
        XCTAssertThrowsError(try SDPSession.open(loop: fx.group.loops[0], o)) { e in
            XCTAssertTrue("\(e)".contains("is not the pinned"), "\(e)")
        }
        o.fingerprint = fingerprint.lowercased()
        let s = try SDPSession.open(loop: fx.group.loops[0], o)
        XCTAssertTrue(s.sdp.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), s.sdp)
        s.client.close()
    }
}
