import Foundation
import ParleyCore
import ParleySRTP
import ParleyAuth
import ParleyTestSupport
import XCTest
@testable import ParleyProtocol
@testable import ParleyServer
@testable import ParleyIO

/// Headless Chromium (Debian's `chromium`, fake camera and microphone),
/// driven by Playwright (tools/interop/browser_call.py), joins rooms
/// through the demo page at `/` with `dev` tokens.
final class BrowserInteropTests: XCTestCase {
    var fx: RelayServerFixture!

    override func setUpWithError() throws { fx = try chromiumFixture() }

    override func tearDown() { fx?.stop() }

    private func run(_ args: [String]) throws -> JSONValue {
        try runBrowserScript("tools/interop/browser_call.py", fx, args, timeout: 120)
    }

    /// The demo page over https:// and its signalling over wss:// (the
    /// server's self-signed certificate): Chromium's TLS 1.3 against
    /// OpenSSL's handshake and then Parley's record layer, both pages in a
    /// room decoding each other.
    func testTwoPagesJoinOverWSSThroughParleysRecordLayer() throws {
        fx.stop()
        fx = try RelayServerFixture(tls: true, configure: { $0.dev = true })
        let before = TCPMetrics.shared.tlsTakenOver.current
        let result = try run(["--room", "secure", "--pages", "2"])
        XCTAssertEqual(result["pages"]?.arrayValue?.count, 2)
        for page in result["pages"]?.arrayValue ?? [] {
            XCTAssertEqual(page["status"]?.stringValue, "connected", "\(page)")
            let first = page["first"]?["video"], last = page["last"]?["video"]
            XCTAssertGreaterThan(last?["framesDecoded"]?.intValue ?? 0, first?["framesDecoded"]?.intValue ?? 0, "\(page)")
        }
        // Page loads, scripts and both WebSockets: connections the record layer carried.
        XCTAssertGreaterThanOrEqual(TCPMetrics.shared.tlsTakenOver.current - before, 2)
    }

    /// Two pages join one room and each decodes the other's video and audio;
    /// a screenshot of the first page (two tiles) is kept for the test output.
    func testTwoPagesSeeAndHearEachOther() throws {
        let shot = tempDir("browser") + "/two-tiles.png"
        let result = try run(["--room", "browsers", "--pages", "2", "--screenshot", shot])
        for page in result["pages"]?.arrayValue ?? [] {
            XCTAssertEqual(page["status"]?.stringValue, "connected", "\(page)")
            let first = page["first"]?["video"], last = page["last"]?["video"]
            XCTAssertGreaterThan(last?["framesDecoded"]?.intValue ?? 0, first?["framesDecoded"]?.intValue ?? 0, "\(page)")
            XCTAssertGreaterThan(last?["packetsReceived"]?.intValue ?? 0, first?["packetsReceived"]?.intValue ?? 0, "\(page)")
            XCTAssertLessThanOrEqual(last?["packetsLost"]?.intValue ?? 0, 5, "packetsLost near 0 on loopback: \(page)")
            XCTAssertGreaterThan(page["last"]?["audio"]?["packetsReceived"]?.intValue ?? 0, 0, "\(page)")
        }
        XCTAssertEqual(result["pages"]?.arrayValue?.count, 2)
        let size = (try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
        XCTAssertGreaterThan(size ?? 0, 1000, "screenshot written")
        print("screenshot of the demo page with two video tiles: \(shot)")
    }

    /// Three pages: each renegotiates (a receiving transceiver per subscribed
    /// track, a new `offer`; the answer maps each SSRC to its section) and
    /// decodes both other pages' video as separate streams.
    func testThreePagesRenegotiateAndEachDecodesTwoStreams() throws {
        let result = try run(["--room", "three", "--pages", "3"])
        assertEachPageShowsTheOthers(result, pages: 3)
    }

    /// Three pages, then the third presses Leave: the other two get
    /// `participant_left`, offer again, and end with two tiles each (their
    /// own and the one other page's), none empty. Then it enters again (the
    /// same user, a new call): the others' freed receivers carry it, and
    /// every page shows three tiles again, none empty, with one audio element
    /// per other page. The same with two
    /// pages, where what the one who left sent came on the other's own
    /// (sendrecv) sections.
    func testWhenAPageLeavesTheOthersRenegotiateAndDropItsTile() throws {
        for n in [3, 2] {
            let result = try run(["--room", "leave\(n)", "--pages", "\(n)", "--leave"])
            XCTAssertEqual(result["left"]?["status"]?.stringValue, "left", "\(result)")
            let others = result["left"]?["others"]?.arrayValue ?? []
            XCTAssertEqual(others.count, n - 1)
            for page in others {
                XCTAssertEqual(page["tiles"]?.intValue, n - 1, "\(page)")
                XCTAssertEqual(page["emptyTiles"]?.intValue, 0, "\(page)")
            }
            XCTAssertEqual(result["pages"]?.arrayValue?.compactMap { $0["user"]?.stringValue }, (0..<n).map { "page\($0)" })
            assertEachPageShowsTheOthers(result, pages: n)
            for page in result["pages"]?.arrayValue ?? [] {
                XCTAssertEqual(page["last"]?["audioElements"]?.intValue, n - 1, "\(page)")
            }
        }
    }

    /// Simulcast from the demo page (?simulcast=1): the first page picks
    /// "low" in its Quality selector; the relay answers for the other page's
    /// track with the lowest layer's rid, and the page then decodes the
    /// smallest picture that page sends, frames still growing.
    func testTheDemoPagesQualitySelectorPicksTheLowLayer() throws {
        let result = try run(["--room", "quality", "--pages", "2", "--simulcast", "--quality", "low"])
        let q = result["quality"]
        XCTAssertEqual(q?["rids"]?.arrayValue?.compactMap(\.stringValue), ["q"], "\(result)")
        let width = q?["frameWidth"]?.intValue ?? 0, smallest = q?["smallestSent"]?.intValue ?? 0
        XCTAssertGreaterThan(width, 0, "\(result)")
        XCTAssertLessThanOrEqual(width, smallest, "the lowest layer's picture: \(result)")
        let page = result["pages"]?.arrayValue?.first
        XCTAssertGreaterThan(page?["last"]?["video"]?["framesDecoded"]?.intValue ?? 0,
                             page?["first"]?["video"]?["framesDecoded"]?.intValue ?? 0, "still decoding: \(result)")
        print("demo quality low: decoded width \(width), smallest sent \(smallest)")
    }

    /// The mixed room: ffmpeg publishes Opus over SDES through `parley sdp`,
    /// and a browser page receives it and plays it (audioLevel > 0).
    func testBrowserHearsFFmpegOverSDES() throws {
        try XCTSkipIf(!FileManager.default.isExecutableFile(atPath: "/usr/bin/ffmpeg"), "ffmpeg is not installed (tools/setup)")
        var o = SDPSession.Options()
        o.server = fx.wsURL
        o.token = fx.token("ffmpeg", room: "mixed")
        let session = try SDPSession.open(loop: fx.group.loops[0], o)
        defer { session.client.close() }
        let ffmpeg = try startFFmpegOpusTone(session, hertz: 440, seconds: 60)
        defer { if ffmpeg.isRunning { ffmpeg.terminate() }; ffmpeg.waitUntilExit() }

        let result = try run(["--room", "mixed", "--pages", "1", "--expect", "audio"])
        let page = try XCTUnwrap(result["pages"]?.arrayValue?.first)
        XCTAssertGreaterThan(page["last"]?["audio"]?["audioLevel"]?.doubleValue ?? 0, 0, "\(page)")
        XCTAssertGreaterThan(page["last"]?["audio"]?["packetsReceived"]?.intValue ?? 0,
                             page["first"]?["audio"]?["packetsReceived"]?.intValue ?? 0, "\(page)")
    }
}

/// The demo page and the dev token endpoint over real HTTP (curl).
final class DemoPageTests: XCTestCase {
    private func get(_ url: String) throws -> (code: String, body: String, headers: String) {
        let r = try runTool("curl", ["-s", "-D", "-", "-o", "/dev/stdout", "-w", "\n%{http_code}", url])
        let lines = r.out.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), r.out, r.out)
    }

    func testThePageIsServedAndDevTokensOnlyWithDev() throws {
        let plain = try RelayServerFixture()
        defer { plain.stop() }
        let page = try get(plain.httpURL + "/")
        XCTAssertEqual(page.code, "200")
        XCTAssertTrue(page.body.contains("<script src=\"/demo.js\"></script>"))
        XCTAssertTrue(page.headers.lowercased().contains("content-security-policy: default-src 'self'; script-src 'self'"), page.headers)
        let js = try get(plain.httpURL + "/demo.js")
        XCTAssertEqual(js.code, "200")
        XCTAssertTrue(js.body.contains("call(\"offer\""))
        XCTAssertFalse(js.body.contains("https://"), "nothing from a CDN")
        XCTAssertEqual(try get(plain.httpURL + "/dev/token?user=a&room=b").code, "404", "no dev tokens by default")

        let dev = try RelayServerFixture(configure: { $0.dev = true })
        defer { dev.stop() }
        XCTAssertEqual(try get(dev.httpURL + "/dev/token?user=a%20b&room=r").code, "400")
        XCTAssertEqual(try get(dev.httpURL + "/dev/token?user=a").code, "400")
        let ok = try get(dev.httpURL + "/dev/token?user=alice&room=r1")
        XCTAssertEqual(ok.code, "200")
        let body = try runTool("curl", ["-s", dev.httpURL + "/dev/token?user=alice&room=r1"]).out
        let token = try XCTUnwrap(JSONValue.parse(body)["token"]?.stringValue)
        let claims = try JWTVerifier(secret: dev.secret).verify(token).get()
        XCTAssertEqual(claims.subject, "alice")
        XCTAssertTrue(claims.canPublish)
    }

    func testDevNeedsALoopbackListener() {
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["listen": "0.0.0.0:7700"], switches: ["dev"])) { e in
            XCTAssertTrue("\(e)".contains("dev"), "\(e)")
        }
        XCTAssertNoThrow(try ServerConfig.resolve(flags: [:], switches: ["dev"]))
    }
}
