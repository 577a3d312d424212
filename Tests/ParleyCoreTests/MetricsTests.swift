import Synchronization
import XCTest
@testable import ParleyCore

final class MetricsTests: XCTestCase {
    func testPrometheusTextFormat() {
        let r = MetricsRegistry()
        let c = r.counter("parley_test_packets_total", help: "Packets.", labels: [("dir", "in")])
        c.inc(); c.inc(2)
        XCTAssertTrue(r.counter("parley_test_packets_total", help: "Packets.", labels: [("dir", "in")]) === c)
        r.gauge("parley_test_rooms", help: "Rooms.").set(5)
        let h = r.histogram("parley_test_latency_seconds", help: "Latency.", bounds: [0.001, 0.01])
        h.observe(0.0005); h.observe(0.005); h.observe(1)
        let text = r.render()
        XCTAssertTrue(text.contains("# TYPE parley_test_packets_total counter\nparley_test_packets_total{dir=\"in\"} 3\n"), text)
        XCTAssertTrue(text.contains("parley_test_rooms 5\n"), text)
        XCTAssertTrue(text.contains("parley_test_latency_seconds_bucket{le=\"0.001\"} 1\n"), text)
        XCTAssertTrue(text.contains("parley_test_latency_seconds_bucket{le=\"0.01\"} 2\n"), text)
        XCTAssertTrue(text.contains("parley_test_latency_seconds_bucket{le=\"+Inf\"} 3\n"), text)
        XCTAssertTrue(text.contains("parley_test_latency_seconds_count 3\n"), text)
    }

    func testLabelValuesAreEscaped() {
        let r = MetricsRegistry()
        r.counter("x_total", help: "x", labels: [("room", "a\"b\\c")]).inc()
        XCTAssertTrue(r.render().contains("x_total{room=\"a\\\"b\\\\c\"} 1"))
    }

    func testDeclaredFamilyIsListedBeforeItsFirstSeries() {
        let r = MetricsRegistry()
        r.declare("parley_test_room_members", .gauge, help: "Members per room.")
        XCTAssertEqual(r.render(), "# HELP parley_test_room_members Members per room.\n# TYPE parley_test_room_members gauge\n")
        r.gauge("parley_test_room_members", help: "Members per room.", labels: [("room", "a")]).set(2)
        XCTAssertTrue(r.render().hasSuffix("# TYPE parley_test_room_members gauge\nparley_test_room_members{room=\"a\"} 2\n"), r.render())
    }

    func testASampledSeriesIsReadAtEachRender() {
        let r = MetricsRegistry()
        let value = Mutex(1.5)
        r.sampled("parley_test_cpu_seconds_total", .counter, help: "CPU.") { value.withLock { $0 } }
        XCTAssertTrue(r.render().contains("# TYPE parley_test_cpu_seconds_total counter\nparley_test_cpu_seconds_total 1.5\n"), r.render())
        value.withLock { $0 = 7 }
        XCTAssertTrue(r.render().contains("parley_test_cpu_seconds_total 7\n"), r.render())
        // The process's own CPU time only grows, and some was used to get here.
        let before = ProcessCPU.seconds()
        var x = 0
        for i in 0..<2_000_000 { x &+= i &* i }
        XCTAssertNotEqual(x, 1)
        XCTAssertGreaterThanOrEqual(ProcessCPU.seconds(), before)
        XCTAssertGreaterThan(before, 0)
    }
}

final class LoggerTests: XCTestCase {
    func testWritesOneJSONObjectPerLine() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let log = Logger(label: "test", level: .info, fd: fds[1])
        log.debug("hidden")
        log.info("hello \"world\"\n", ["port": 7700, "ok": true, "who": "alice"])
        close(fds[1])
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fds[0], &buf, buf.count)
        close(fds[0])
        let text = String(decoding: buf[0..<max(0, n)], as: UTF8.self)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 1)
        let obj = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(obj["msg"] as? String, "hello \"world\"\n")
        XCTAssertEqual(obj["level"] as? String, "info")
        XCTAssertEqual(obj["port"] as? Int, 7700)
        XCTAssertEqual(obj["who"] as? String, "alice")
        XCTAssertEqual(obj["ok"] as? Bool, true)
        XCTAssertNotNil(obj["ts"] as? String)
    }
}
