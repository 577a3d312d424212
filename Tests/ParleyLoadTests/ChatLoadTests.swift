import Foundation
import ParleyCore
import ParleyTestSupport
import XCTest

/// `parley load chat` against a real `parley serve`: users sync, send 1:1
/// and group messages, a quarter of them go offline for the middle third
/// and get everything when they return. Counts and verdicts only.
final class ChatLoadTests: XCTestCase {
    func testChatUsersGetEveryMessageIncludingThoseWhoWereOffline() throws {
        let dir = tempDir("load-chat")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (serve, lines, _) = try startServe(dataDir: dir)
        defer { kill(serve.processIdentifier, SIGTERM); serve.waitUntilExit() }
        let port = try XCTUnwrap(lines.first { $0.hasPrefix("listening http ") }?.split(separator: ":").last)
        let json = dir + "/chat.json"
        let r = try runTool(parleyBinary, ["load", "chat", "--url", "ws://127.0.0.1:\(port)", "--secret-file", dir + "/secret",
                                           "--users", "12", "--rate", "60/s", "--duration", "3s", "--groups", "2x5",
                                           "--offline", "25%", "--max-loss", "0%", "--json", json, "--quiet"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let c = try JSONValue.parse(String(contentsOfFile: json, encoding: .utf8))
        XCTAssertEqual(c["users"]?["started"], 12)
        XCTAssertEqual(c["users"]?["ready"], 12, "everyone is back at the end")
        XCTAssertEqual(c["users"]?["reconnects"], 3)
        XCTAssertEqual(c["users"]?["groupsCreated"], 2)
        XCTAssertEqual(c["messages"]?["sent"], 180, "60/s for 3 s: the schedule's messages, however late the generator ran")
        XCTAssertEqual(c["sendLagMs"]?["count"], 180)
        let acked = try XCTUnwrap(c["messages"]?["acked"]?.intValue)
        let expected = try XCTUnwrap(c["messages"]?["expectedDeliveries"]?.intValue)
        XCTAssertGreaterThan(acked, 0)
        XCTAssertGreaterThanOrEqual(expected, acked, "a 1:1 message has one recipient, a group message four")
        XCTAssertEqual(c["messages"]?["delivered"]?.intValue, expected)
        XCTAssertEqual(c["messages"]?["undelivered"], 0)
        XCTAssertEqual(c["sentAckMs"]?["count"]?.intValue, acked)
        XCTAssertNotNil(c["deliveryMs"]?["p99"]?.doubleValue)
        XCTAssertEqual(c["errors"]?["total"], 0, "\(c["errors"] ?? .null)")
        XCTAssertEqual(c["passed"], true)
    }
}
