import Foundation
import ParleyCore
import ParleyTestSupport
import XCTest

/// `parley load media` as a performance engineer runs it: a real `parley
/// serve` (child process), the load command as another process over TLS
/// WebSocket, STUN and SRTP on loopback, and its JSON report read back.
/// Nothing here asserts a speed: only counts and verdicts.
final class MediaLoadTests: XCTestCase {
    func load(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        try runTool(parleyBinary, ["load", "media"] + args, timeout: 120)
    }

    func report(_ path: String) throws -> JSONValue {
        try JSONValue.parse(String(contentsOfFile: path, encoding: .utf8))
    }

    func testAShortRunOnLoopbackReceivesEverythingSentAndAThresholdThatCannotHoldFails() throws {
        let dir = tempDir("load")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (serve, lines, _) = try startServe(dataDir: dir, insecure: false)
        defer { kill(serve.processIdentifier, SIGTERM); serve.waitUntilExit() }
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("listening https ") }?.split(separator: ":").last)
        let base = ["--url", "wss://127.0.0.1:\(port)", "--insecure", "--secret-file", dir + "/secret",
                    "--rooms", "2", "--per-room", "3", "--publishers-per-room", "2", "--duration", "2s",
                    "--video", "400k@15", "--suite", "GCM", "--quiet"]

        // tools/load/smoke.json is the same run (2 × 3, two publishing, 2 s, --max-loss 0.5% --max-join 30s).
        let json = dir + "/report.json", html = dir + "/report.html"
        let ok = try runTool(parleyBinary, ["load", "--scenario", repositoryPath("tools/load/smoke.json"), "--suite", "GCM", "--quiet",
                                            "--url", "wss://127.0.0.1:\(port)", "--insecure", "--secret-file", dir + "/secret",
                                            "--json", json, "--html", html], timeout: 120)
        XCTAssertEqual(ok.status, 0, ok.out + ok.err)
        XCTAssertTrue(ok.out.contains("result        pass"), ok.out)
        let r = try report(json)
        XCTAssertEqual(r["participants"]?["started"], 6)
        XCTAssertEqual(r["participants"]?["joined"], 6)
        XCTAssertEqual(r["participants"]?["latched"], 6)
        XCTAssertEqual(r["participants"]?["receivedMedia"], 6, "every participant receives the room's two publishers")
        // Two publishers per room, audio and video each: the third participant
        // subscribes to four tracks, each publisher to the other's two.
        XCTAssertEqual(r["participants"]?["subscriptions"]?.intValue, 2 * (4 + 2 + 2))
        XCTAssertEqual(r["participants"]?["silentSubscriptions"], 0)
        let sent = try XCTUnwrap(r["packets"]?["sent"]?.intValue)
        let expected = try XCTUnwrap(r["packets"]?["expected"]?.intValue)
        XCTAssertGreaterThan(sent, 0)
        // Loopback, a light load: every packet a receiver should have got, it got, once.
        XCTAssertEqual(r["packets"]?["received"]?.intValue, expected)
        XCTAssertEqual(r["packets"]?["lost"], 0)
        XCTAssertEqual(r["packets"]?["duplicates"], 0)
        XCTAssertEqual(r["lossPercent"], 0)
        // Each packet reaches the room's other two participants, less what was
        // sent before a subscription took effect.
        XCTAssertLessThanOrEqual(expected, 2 * sent)
        XCTAssertGreaterThan(expected, sent)
        XCTAssertEqual(r["latencyMs"]?["count"]?.intValue, expected)
        XCTAssertNotNil(r["latencyMs"]?["p99"]?.doubleValue)
        XCTAssertNotNil(r["joinMs"]?["max"]?.doubleValue)
        XCTAssertNotNil(r["stunRttMs"]?["p50"]?.doubleValue)
        XCTAssertGreaterThan(r["packets"]?["rtcpSent"]?.intValue ?? 0, 0)
        XCTAssertGreaterThan(r["packets"]?["keyframes"]?.intValue ?? 0, 0)
        XCTAssertEqual(r["errors"]?["signalling"], 0)
        XCTAssertEqual(r["errors"]?["srtp"], 0)
        XCTAssertEqual(r["passed"], true)
        XCTAssertGreaterThan(r["generator"]?["cpuSeconds"]?.doubleValue ?? 0, 0)
        XCTAssertNotNil(r["generator"]?["keptSchedule"]?.boolValue)
        XCTAssertFalse(r["timeline"]?.arrayValue?.isEmpty ?? true)
        let page = try String(contentsOfFile: html, encoding: .utf8)
        XCTAssertTrue(page.hasPrefix("<!DOCTYPE html>"))
        XCTAssertEqual(page.components(separatedBy: "<svg ").count - 1, 4, "latency, loss, throughput, participants")
        XCTAssertFalse(page.contains("<script"), "self-contained, no scripts")
        try assertChartsRender(html)

        // No latency is 0 ms: the threshold fails and says why, with exit code 1.
        let failed = dir + "/failed.json"
        let bad = try load(base + ["--max-p99", "0ms", "--json", failed])
        XCTAssertEqual(bad.status, 1, bad.out + bad.err)
        let f = try report(failed)
        XCTAssertEqual(f["passed"], false)
        XCTAssertTrue(f["failures"]?.arrayValue?.first?.stringValue?.contains("--max-p99") ?? false, "\(f["failures"] ?? .null)")
        XCTAssertTrue(bad.out.contains("FAIL"), bad.out)

        // Usage errors are exit code 2, before anything connects.
        XCTAssertEqual(try load(["--url", "wss://127.0.0.1:\(port)", "--secret-file", dir + "/secret"]).status, 2, "wss without --insecure")
        XCTAssertEqual(try load(["--url", "ws://127.0.0.1:\(port)"]).status, 2, "no way to get tokens")
        XCTAssertEqual(try load(base + ["--video", "fast"]).status, 2)
    }

    /// Headless Chromium opens the page and takes a screenshot; the chart
    /// lines' colours must be on it (latency blue, throughput green and orange).
    func assertChartsRender(_ html: String) throws {
        let shot = html + ".png"
        let c = try runTool("chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=900,1700",
                                         "--screenshot=\(shot)", "file://\(html)"], timeout: 60)
        XCTAssertTrue(FileManager.default.fileExists(atPath: shot), "chromium wrote no screenshot: \(c.err)")
        let rgb = try runProcess("ffmpeg", ["-v", "error", "-i", shot, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        XCTAssertEqual(rgb.status, 0)
        func pixels(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> Int {
            var n = 0
            rgb.out.withUnsafeBytes { p in
                var i = 0
                while i + 2 < p.count {
                    if abs(Int(p[i]) - Int(r)) < 24 && abs(Int(p[i + 1]) - Int(g)) < 24 && abs(Int(p[i + 2]) - Int(b)) < 24 { n += 1 }
                    i += 3
                }
            }
            return n
        }
        XCTAssertGreaterThan(pixels(0x1f, 0x77, 0xb4), 50, "the latency chart's line")
        XCTAssertGreaterThan(pixels(0x2c, 0xa0, 0x2c), 50, "the throughput chart's sent line")
        XCTAssertGreaterThan(pixels(0xff, 0x7f, 0x0e), 50, "the throughput chart's received line")
    }

    func testFindCapacityGrowsTheRunAndReadsTheServersCPUFromMetrics() throws {
        let dir = tempDir("load-capacity")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (serve, lines, _) = try startServe(dataDir: dir)
        defer { kill(serve.processIdentifier, SIGTERM); serve.waitUntilExit() }
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("listening http ") }?.split(separator: ":").last)
        let json = dir + "/capacity.json"
        // Thresholds this light load always holds: the steps are what is checked, not a capacity.
        let r = try load(["--find-capacity", "--url", "ws://127.0.0.1:\(port)", "--secret-file", dir + "/secret",
                          "--rooms", "1", "--per-room", "2", "--duration", "1s", "--capacity-max-rooms", "2",
                          "--max-loss", "50%", "--json", json, "--quiet"])
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let c = try report(json)
        let steps = try XCTUnwrap(c["steps"]?.arrayValue)
        XCTAssertEqual(steps.map { $0["participants"]?.intValue }, [2, 4], "rooms doubled from 1 up to the cap")
        for s in steps {
            XCTAssertEqual(s["passed"], true)
            XCTAssertGreaterThan(s["serverCPUSeconds"]?.doubleValue ?? -1, 0, "read from parley_process_cpu_seconds_total")
            XCTAssertGreaterThan(s["serverCPUSecondsPerParticipantSecond"]?.doubleValue ?? -1, 0)
        }
        XCTAssertEqual(c["largestParticipants"], 4)
        XCTAssertTrue(r.out.contains("capacity: 4 participants held"), r.out)
    }

    func testLossOnThePathShowsUpInTheReport() throws {
        let dir = tempDir("load-loss")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // One loop, one relay port: the proxy needs one target.
        let (serve, lines, _) = try startServe(dataDir: dir, extra: ["--loops", "1"])
        defer { kill(serve.processIdentifier, SIGTERM); serve.waitUntilExit() }
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("listening http ") }?.split(separator: ":").last)
        let media = try XCTUnwrap(lines.first { $0.hasPrefix("listening media ") }?.split(separator: ":").last.flatMap { UInt16($0) })
        let proxy = LossProxy(targetPort: media, dropEvery: 20) // 5 % of the RTP on the way in
        proxy.start()
        defer { proxy.stop() }
        let json = dir + "/report.json"
        let r = try load(["--url", "ws://127.0.0.1:\(port)", "--secret-file", dir + "/secret", "--rooms", "1", "--per-room", "3",
                          "--publishers-per-room", "2", "--duration", "2s", "--video", "300k@15", "--media-via", "127.0.0.1:\(proxy.port)",
                          "--max-loss", "1%", "--json", json, "--quiet"])
        XCTAssertEqual(r.status, 1, "5 % loss is over --max-loss 1 %: " + r.out + r.err)
        let report = try JSONValue.parse(String(contentsOfFile: json, encoding: .utf8))
        let (forwarded, dropped) = proxy.counts
        XCTAssertGreaterThan(dropped, 0)
        let injected = Double(dropped) / Double(forwarded + dropped) * 100
        let measured = try XCTUnwrap(report["lossPercent"]?.doubleValue)
        XCTAssertEqual(measured, injected, accuracy: 0.2, "the report's loss is what the path dropped")
        XCTAssertEqual(report["packets"]?["duplicates"], 0)
    }

    func testTokensFromAFileJoinTheRoomsTheyName() throws {
        let dir = tempDir("load-tokens")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (serve, lines, _) = try startServe(dataDir: dir)
        defer { kill(serve.processIdentifier, SIGTERM); serve.waitUntilExit() }
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("listening http ") }?.split(separator: ":").last)
        var tokens = "# minted by parley token\n"
        for user in ["ana", "ben"] {
            let t = try runTool(parleyBinary, ["token", "--user", user, "--room", "standup", "--can-publish", "--data-dir", dir])
            XCTAssertEqual(t.status, 0, t.err)
            tokens += t.out
        }
        try tokens.write(toFile: dir + "/tokens", atomically: true, encoding: .utf8)
        let json = dir + "/report.json"
        let r = try load(["--url", "ws://127.0.0.1:\(port)", "--token-file", dir + "/tokens", "--rooms", "1", "--per-room", "2",
                          "--duration", "1s", "--json", json, "--quiet"])
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let report = try JSONValue.parse(String(contentsOfFile: json, encoding: .utf8))
        XCTAssertEqual(report["participants"]?["joined"], 2)
        XCTAssertEqual(report["participants"]?["receivedMedia"], 2, "both in the tokens' room, standup")
        XCTAssertEqual(report["participants"]?["subscriptions"], 2, "each subscribes to the other's track, not its own")
        XCTAssertEqual(try load(["--url", "ws://127.0.0.1:\(port)", "--token-file", dir + "/tokens", "--rooms", "2", "--per-room", "2"]).status,
                       2, "two tokens for four participants")
    }

    func testADaemonStoppedMidRunShowsAsLossAndErrorsNotAHang() throws {
        let dir = tempDir("load-stop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (serve, lines, _) = try startServe(dataDir: dir)
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL); serve.waitUntilExit() } }
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("listening http ") }?.split(separator: ":").last)
        let json = dir + "/report.json"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: parleyBinary)
        p.arguments = ["load", "media", "--url", "ws://127.0.0.1:\(port)", "--secret-file", dir + "/secret",
                       "--rooms", "1", "--per-room", "2", "--duration", "5s", "--max-loss", "0.5%", "--json", json]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        // Wait until media flows to both participants (the live line says so), then kill the server.
        var seen = ""
        while !seen.contains("(media 2)") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        XCTAssertTrue(seen.contains("(media 2)"), seen)
        kill(serve.processIdentifier, SIGKILL)
        serve.waitUntilExit()
        // The run goes on to the end of its schedule, counting what never arrives, then reports.
        waitUntil("the load run to end", timeout: 90) { !p.isRunning }
        XCTAssertEqual(p.terminationStatus, 1)
        let r = try report(json)
        XCTAssertEqual(r["passed"], false)
        XCTAssertGreaterThan(r["packets"]?["lost"]?.intValue ?? 0, 0)
        XCTAssertGreaterThan(r["lossPercent"]?.doubleValue ?? 0, 0.5)
        XCTAssertTrue(r["failures"]?.arrayValue?.contains { $0.stringValue?.hasPrefix("loss ") ?? false } ?? false, "\(r["failures"] ?? .null)")
        XCTAssertGreaterThan(r["errors"]?["signalling"]?.intValue ?? 0, 0, "\(r["errors"] ?? .null)")
    }
}
