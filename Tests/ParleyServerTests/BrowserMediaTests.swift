import Foundation
import ParleyCore
import ParleyTestSupport
import XCTest
@testable import ParleyServer

/// Headless Chromium (fake camera, Playwright: tools/interop/browser_media.py)
/// against the relay for what needs a real browser's media engine: its
/// send-side bandwidth estimate growing from the relay's transport-wide
/// feedback, and codecs chosen with setCodecPreferences decoded on the
/// other side. Conditions are waited for with deadlines, never timed.
final class BrowserMediaTests: XCTestCase {
    var fx: RelayServerFixture!

    override func setUpWithError() throws { fx = try chromiumFixture() }

    override func tearDown() { fx?.stop() }

    /// A relay counter (the fixture's relay counts in the shared registry: compare with a reading from before).
    private func metric(_ name: String) -> Double { Double(MetricsRegistry.shared.counter(name, help: "").current) }

    private func run(_ args: [String]) throws -> JSONValue {
        try runBrowserScript("tools/interop/browser_media.py", fx, args)
    }

    /// The publisher negotiated transport-cc (and not REMB); the relay's
    /// feedback lets Chromium's estimate leave its 300 kbit/s start.
    func testChromiumBandwidthEstimateGrowsFromTransportWideFeedback() throws {
        let before = metric("parley_relay_transport_feedback_sent_total")
        let result = try run(["bwe", "--room", "bwe"])
        let answer = result["answer"]?.stringValue ?? ""
        XCTAssertTrue(answer.contains("transport-wide-cc-extensions-01"), answer)
        XCTAssertTrue(answer.contains(" transport-cc\r\n"), answer)
        XCTAssertFalse(answer.contains("goog-remb"), "REMB only for peers without transport-cc")
        let step = result["steps"]?.arrayValue?.first
        XCTAssertEqual(step?["ok"]?.boolValue, true, "\(result)")
        XCTAssertGreaterThan(step?["stats"]?["availableOutgoingBitrate"]?.doubleValue ?? 0, 1_000_000)
        XCTAssertGreaterThan(metric("parley_relay_transport_feedback_sent_total"), before)
        print("availableOutgoingBitrate: \(result["first"]?["availableOutgoingBitrate"]?.doubleValue ?? 0) -> "
              + "\(step?["stats"]?["availableOutgoingBitrate"]?.doubleValue ?? 0) bit/s")
    }

    /// The same with three simulcast layers: the relay's feedback names a
    /// layer's SSRC, so Chromium takes it (it fell to 30 kbit/s when the
    /// feedback named the track's SSRC, which is the relay's pick).
    func testChromiumBandwidthEstimateGrowsWhenPublishingSimulcast() throws {
        let result = try run(["bwe", "--simulcast", "--room", "bwe-simulcast"])
        XCTAssertTrue((result["answer"]?.stringValue ?? "").contains("a=simulcast:recv q;h;f\r\n"))
        let step = result["steps"]?.arrayValue?.first
        XCTAssertEqual(step?["ok"]?.boolValue, true, "\(result)")
        XCTAssertGreaterThan(step?["stats"]?["availableOutgoingBitrate"]?.doubleValue ?? 0, 1_000_000)
        print("simulcast availableOutgoingBitrate: \(step?["stats"]?["availableOutgoingBitrate"]?.doubleValue ?? 0) bit/s")
    }

    /// VP9, then H.264 (packetization-mode 1) when this Chromium has an encoder, preferred by the publisher and decoded by the subscriber.
    func testChromiumPrefersVP9OrH264AndTheOtherPageDecodesIt() throws {
        let before = metric("parley_relay_header_extension_rewrites_total")
        for codec in ["VP9", "H264"] {
            let result = try run(["codec", "--codec", codec, "--room", "codec-\(codec)"])
            if let skip = result["skip"]?.stringValue { print("skipped \(codec): \(skip)"); continue }
            let step = result["steps"]?.arrayValue?.first
            XCTAssertEqual(step?["ok"]?.boolValue, true, "\(result)")
            let inbound = step?["stats"]?["inbound"]?.arrayValue?.first
            XCTAssertEqual(inbound?["codec"]?.stringValue?.lowercased(), "video/\(codec.lowercased())")
            XCTAssertGreaterThan(inbound?["framesDecoded"]?.intValue ?? 0, 20)
        }
        XCTAssertGreaterThan(metric("parley_relay_header_extension_rewrites_total"), before,
                             "forwarded packets carry the subscriber's extension ids")
    }

    /// Simulcast: Chromium publishes three rid layers; a subscriber asks for
    /// low, high and low again: frames keep decoding through each switch,
    /// the decoded picture is larger at high, smaller again at low, and no
    /// freeze the subscriber's Chromium counts (inbound-rtp freezeCount and
    /// totalFreezesDuration, sampled through the switches) is longer than one
    /// keyframe interval of the layers switched to (the publisher's own:
    /// seconds since publishing over its keyFramesEncoded; the relay's PLIs
    /// make it well under a second). The upper layers are sent only once Chromium's bandwidth estimate
    /// grows, which needs transport-wide feedback it accepts: on one of its
    /// own SSRCs (libwebrtc drops feedback about any other media SSRC, and a
    /// simulcast track's SSRC is the relay's pick).
    func testChromiumSimulcastSubscriberSwitchesLayersWithoutAFreeze() throws {
        let result = try run(["simulcast", "--room", "simulcast"])
        let answer = result["answer"]?.stringValue ?? ""
        XCTAssertTrue(answer.contains("a=simulcast:recv q;h;f\r\n"), answer)
        let steps = result["steps"]?.arrayValue ?? []
        XCTAssertEqual(steps.count, 6, "\(result)")
        for s in steps { XCTAssertEqual(s["ok"]?.boolValue, true, "\(s)") }
        let widths = result["widths"]?.arrayValue?.compactMap(\.intValue) ?? []
        XCTAssertEqual(widths.count, 3)
        if widths.count == 3 {
            XCTAssertGreaterThan(widths[1], widths[0], "high is a larger picture than low")
            XCTAssertLessThan(widths[2], widths[1], "and low again a smaller one")
        }
        XCTAssertGreaterThan(metric("parley_relay_simulcast_layers_total"), 0)
        // The freeze bound: compared with the keyframe intervals measured in this run, not with a time.
        let freezes = result["freezes"]
        XCTAssertEqual(freezes?["reported"]?.boolValue, true, "the subscriber's stats give freezeCount: \(result)")
        let longest = freezes?["longest"]?.doubleValue ?? .infinity
        let intervals = result["keyframeInterval"]?.objectValue ?? [:]
        let top = (result["sent"]?["outbound"]?.arrayValue ?? []).filter { ($0["keyFramesEncoded"]?.intValue ?? 0) > 0 }
            .max { ($0["frameWidth"]?.intValue ?? 0) < ($1["frameWidth"]?.intValue ?? 0) }?["rid"]?.stringValue ?? ""
        let bound = ["q", top].compactMap { intervals[$0]?.doubleValue }.min() ?? 0
        XCTAssertGreaterThan(bound, 0, "keyframe intervals of q and \(top): \(result)")
        XCTAssertLessThanOrEqual(longest, bound, "longest freeze \(longest) s against the keyframe interval \(bound) s: \(result)")
        let sent = (result["sent"]?["outbound"]?.arrayValue ?? []).map { "\($0["rid"]?.stringValue ?? ""): \($0["bytesSent"]?.intValue ?? 0) B" }
        print("simulcast: decoded widths \(widths) (low, high, low); sent \(sent); publisher's estimate "
              + "\(result["sent"]?["availableOutgoingBitrate"]?.doubleValue ?? 0) bit/s; freezes \(freezes?["count"]?.intValue ?? -1), "
              + "longest \(longest) s, keyframe interval of q and \(top) \(bound) s")
    }
}
