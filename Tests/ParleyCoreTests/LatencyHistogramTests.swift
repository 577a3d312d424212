import XCTest
@testable import ParleyCore

final class LatencyHistogramTests: XCTestCase {
    func testEmptyHasNoPercentile() {
        let h = LatencyHistogram()
        XCTAssertNil(h.percentile(0.5))
        XCTAssertEqual(h.count, 0)
    }

    func testSmallValuesAreExact() {
        var h = LatencyHistogram()
        for v in 0..<16 { h.record(UInt64(v)) }
        XCTAssertEqual(h.percentile(1.0 / 16), 0)
        XCTAssertEqual(h.percentile(0.5), 7)
        XCTAssertEqual(h.percentile(1), 15)
        XCTAssertEqual(h.max, 15)
    }

    /// Every value lands in a bucket whose upper bound is at least the value
    /// and at most 1/16 above it, and buckets never go backwards.
    func testBucketBoundsHoldEveryValueWithinOneSixteenth() {
        var last = -1
        var values: [UInt64] = Array(0..<5000)
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<20000 { x = x &* 6364136223846793005 &+ 1442695040888963407; values.append(x >> (x % 60)) }
        values.append(.max)
        for v in values.sorted() {
            let b = LatencyHistogram.bucket(v)
            XCTAssertGreaterThanOrEqual(b, last)
            last = b
            let upper = LatencyHistogram.upperBound(b)
            XCTAssertGreaterThanOrEqual(upper, v)
            XCTAssertLessThanOrEqual(Double(upper - v), Double(v) / 16 + 1, "value \(v) bucket \(b) upper \(upper)")
        }
    }

    func testPercentilesOfAUniformSpreadAreWithinBucketPrecision() {
        var h = LatencyHistogram()
        for us in 1...10_000 { h.record(UInt64(us) * 1000) } // 1 µs ... 10 ms
        let p50 = Double(h.percentile(0.5)!), p99 = Double(h.percentile(0.99)!)
        XCTAssertGreaterThanOrEqual(p50, 5_000_000); XCTAssertLessThanOrEqual(p50, 5_000_000 * 1.0625)
        XCTAssertGreaterThanOrEqual(p99, 9_900_000); XCTAssertLessThanOrEqual(p99, 10_000_000)
        XCTAssertEqual(h.percentile(1), 10_000_000) // capped at the maximum seen
        XCTAssertEqual(h.count, 10_000)
    }

    func testResetForgetsEverything() {
        var h = LatencyHistogram()
        h.record(1_000_000)
        let copy = h
        h.reset()
        XCTAssertNil(h.percentile(0.5))
        XCTAssertEqual(h.max, 0)
        XCTAssertEqual(copy.count, 1, "a copy taken before reset keeps its values")
        h.record(42)
        XCTAssertEqual(h.percentile(0.99), 42)
    }
}
