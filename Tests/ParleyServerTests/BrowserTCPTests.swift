import Foundation
import ParleyCore
import ParleyRelay
import ParleyTestSupport
import XCTest
@testable import ParleyServer

/// Headless Chromium reaches the relay over ICE-TCP (RFC 6544, RFC 4571
/// framing) when the server offers no UDP candidate (`webrtc-candidates tcp`):
/// two pages join one room through the demo page, the selected candidate
/// pair is TCP, and each decodes the other's video. And when the browser
/// sends no UDP: a page in a room of two UDP pages gets there over ICE-TCP.
final class BrowserTCPTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipIf(!FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "chromium is not installed (tools/setup)")
        let probe = try runTool("python3", ["-c", "import playwright.sync_api"])
        try XCTSkipIf(probe.status != 0, "playwright is not installed (tools/setup)")
    }

    /// Both candidates offered: the UDP one's priority wins, so the pages use UDP.
    func testUDPWinsWhenBothCandidatesWork() throws {
        let fx = try RelayServerFixture(loops: 1, tcp: RelayTCPConfig(), configure: { $0.dev = true })
        defer { fx.stop() }
        let udpPort = fx.relay.workers[0].localAddress.port
        let r = try runTool("python3", [repositoryPath("tools/interop/browser_call.py"), fx.httpURL, "--room", "both",
                                        "--pages", "2"], timeout: 120)
        XCTAssertEqual(r.status, 0, "\(r.out)\n\(r.err)")
        let result = try XCTUnwrap(try? JSONValue.parse(r.out.split(separator: "\n").last.map(String.init) ?? ""), r.out)
        for page in result["pages"]?.arrayValue ?? [] {
            XCTAssertEqual(page["last"]?["path"]?["protocol"]?.stringValue, "udp", "\(page)")
            XCTAssertEqual(page["last"]?["path"]?["port"]?.intValue, Int(udpPort), "\(page)")
        }
        XCTAssertEqual(result["pages"]?.arrayValue?.count, 2)
    }

    /// Two pages on UDP and a third in a Chromium whose WebRTC sends no UDP
    /// (IP handling policy disable_non_proxied_udp, and no proxy): both
    /// candidates offered, the third's pair is the TCP one, the others stay
    /// on UDP, and every page decodes both others' video and hears them.
    func testAPageWithoutUDPJoinsTwoUDPPagesOverICETCP() throws {
        let fx = try RelayServerFixture(loops: 1, tcp: RelayTCPConfig(), configure: { $0.dev = true })
        defer { fx.stop() }
        let udpPort = Int(fx.relay.workers[0].localAddress.port)
        let tcpPort = Int(try XCTUnwrap(fx.relay.workers[0].tcpLocalAddress?.port))
        let result = try runBrowserScript("tools/interop/browser_call.py", fx, ["--room", "no-udp", "--pages", "3", "--udp-off-pages", "1"])
        let paths = (result["pages"]?.arrayValue ?? []).map { "\($0["last"]?["path"]?["protocol"]?.stringValue ?? "") \($0["last"]?["path"]?["port"]?.intValue ?? 0)" }
        XCTAssertEqual(paths, ["udp \(udpPort)", "udp \(udpPort)", "tcp \(tcpPort)"], "\(result)")
        assertEachPageShowsTheOthers(result, pages: 3)
        for page in result["pages"]?.arrayValue ?? [] {
            XCTAssertGreaterThan(page["last"]?["audio"]?["packetsReceived"]?.intValue ?? 0, 0, "\(page)")
        }
        print("a page without UDP among two UDP pages: paths \(paths)")
    }

    func testPagesJoinOverICETCPWhenTheServerOffersNoUDPCandidate() throws {
        let fx = try RelayServerFixture(loops: 1, tcp: RelayTCPConfig(), configure: {
            $0.dev = true
            $0.webrtcCandidates = ["tcp"]
        })
        defer { fx.stop() }
        let tcpPort = try XCTUnwrap(fx.relay.workers[0].tcpLocalAddress?.port)
        let before = MetricsRegistry.shared.counter("parley_relay_tcp_connections_total", help: "",
                                                    labels: [("result", "accepted")]).current

        let r = try runTool("python3", [repositoryPath("tools/interop/browser_call.py"), fx.httpURL, "--room", "tcp-only",
                                        "--pages", "2"], timeout: 120)
        XCTAssertEqual(r.status, 0, "\(r.out)\n\(r.err)")
        let line = r.out.split(separator: "\n").last.map(String.init) ?? ""
        let result = try XCTUnwrap(try? JSONValue.parse(line), "no summary: \(r.out)\n\(r.err)")
        let pages = result["pages"]?.arrayValue ?? []
        XCTAssertEqual(pages.count, 2)
        for page in pages {
            XCTAssertEqual(page["last"]?["path"]?["protocol"]?.stringValue, "tcp", "selected candidate pair: \(page)")
            XCTAssertEqual(page["last"]?["path"]?["port"]?.intValue, Int(tcpPort), "\(page)")
            let first = page["first"]?["video"], last = page["last"]?["video"]
            XCTAssertGreaterThan(last?["framesDecoded"]?.intValue ?? 0, first?["framesDecoded"]?.intValue ?? 0, "\(page)")
            XCTAssertGreaterThan(page["last"]?["audio"]?["packetsReceived"]?.intValue ?? 0, 0, "\(page)")
        }
        for page in pages {
            print("ICE-TCP page: path \(page["last"]?["path"] ?? .null), video framesDecoded \(page["first"]?["video"]?["framesDecoded"] ?? .null)"
                  + " -> \(page["last"]?["video"]?["framesDecoded"] ?? .null), audio packetsReceived \(page["last"]?["audio"]?["packetsReceived"] ?? .null)")
        }
        XCTAssertGreaterThanOrEqual(MetricsRegistry.shared.counter("parley_relay_tcp_connections_total", help: "",
                                                                   labels: [("result", "accepted")]).current, before + 2)
    }
}
