@testable import ParleyLoad
import XCTest

final class LoadOptionsTests: XCTestCase {
    func testVideoProfileParsesRateAndFrameRate() {
        XCTAssertEqual(VideoProfile("1.5mbps@30"), VideoProfile(bitsPerSecond: 1_500_000, framesPerSecond: 30))
        XCTAssertEqual(VideoProfile("800k@25"), VideoProfile(bitsPerSecond: 800_000, framesPerSecond: 25))
        XCTAssertEqual(VideoProfile("2m"), VideoProfile(bitsPerSecond: 2_000_000, framesPerSecond: 30))
        for bad in ["", "fast", "1.5mbps@0", "1.5mbps@999", "-1m@30", "1m@30@30"] { XCTAssertNil(VideoProfile(bad), bad) }
        // Keyframes are 4× a delta frame and the average stays at the bitrate.
        let v = VideoProfile(bitsPerSecond: 1_200_000, framesPerSecond: 30)
        let (delta, key) = v.frameBytes
        XCTAssertEqual(key, 4 * delta)
        let perInterval = delta * (v.framesPerKeyframe - 1) + key
        XCTAssertEqual(Double(perInterval), 1_200_000 / 8 * 2, accuracy: 200)
    }

    func testDurationsAndPercentages() {
        XCTAssertEqual(Duration.parse("90s"), .seconds(90))
        XCTAssertEqual(Duration.parse("500ms"), .milliseconds(500))
        XCTAssertEqual(Duration.parse("1m30s"), .seconds(90))
        XCTAssertEqual(Duration.parse("2"), .seconds(2))
        XCTAssertNil(Duration.parse("soon"))
        XCTAssertEqual(parseFraction("0.5%"), 0.005)
        XCTAssertNil(parseFraction("150%"))
    }

    func testValidationSaysWhatIsMissing() throws {
        var o = MediaLoadOptions()
        o.url = "ws://127.0.0.1:1"
        XCTAssertThrowsError(try o.validate()) { XCTAssertTrue("\($0)".contains("--secret-file")) }
        o.secret = Array(repeating: 1, count: 32)
        XCTAssertNoThrow(try o.validate())
        o.url = "wss://127.0.0.1:1"
        XCTAssertThrowsError(try o.validate()) { XCTAssertTrue("\($0)".contains("--insecure")) }
        XCTAssertThrowsError(try o.apply("suite", "ROT13"))
        XCTAssertThrowsError(try o.apply("max-loss", "lots"))
        try o.apply("bind", "127.0.0.2, 127.0.1.254-127.0.2.1")
        XCTAssertEqual(o.bind, ["127.0.0.2", "127.0.1.254", "127.0.1.255", "127.0.2.0", "127.0.2.1"])
        XCTAssertThrowsError(try o.apply("bind", "127.0.0.1-126.0.0.1"))
        XCTAssertThrowsError(try o.apply("bind", "10.0.0.0-10.1.0.0"), "more than 4096")
        try o.apply("suite", "GCM")
        XCTAssertEqual(o.suite, .aeadAES128GCM)
    }

    func testASubscriptionTellsDuplicatesFromReorderedPackets() {
        let s = Subscription(ssrc: 1, clockRate: 48_000)
        XCTAssertEqual(s.record(65534), .fresh)
        XCTAssertEqual(s.record(1), .fresh) // wrapped, 65535 and 0 skipped
        XCTAssertEqual(s.record(65535), .reordered)
        XCTAssertEqual(s.record(65535), .duplicate)
        XCTAssertEqual(s.record(0), .reordered)
        XCTAssertEqual(s.received, 4)
        XCTAssertEqual(s.expected, 4)
    }
}
