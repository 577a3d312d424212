import XCTest
import Foundation
import ParleyHTTP
@testable import ParleyServer
@testable import ParleyAuth
import ParleyTestSupport

/// docs/protocol.md: a token may be up to 8192 bytes. The signalling `auth`
/// message used to cap every string field at 256 bytes, so a token for a
/// 39-character user in a 26-character room (287 bytes) was refused.
final class LongTokenTests: XCTestCase {
    /// `parley token` for `user` in `room` (real binary, the fixture's secret).
    func mint(_ user: String, room: String, dataDir: String) throws -> (status: Int32, token: String, err: String) {
        let r = try runTool(parleyBinary, ["token", "--user", user, "--room", room, "--can-publish", "--data-dir", dataDir])
        return (r.status, r.out.trimmingCharacters(in: .whitespacesAndNewlines), r.err)
    }

    func testTheLongestDocumentedTokenAuthenticatesOnTheWebSocket() throws {
        let fx = try RelayServerFixture()
        defer { fx.stop() }
        let room = String(repeating: "r", count: 26)
        // The user name that makes the token exactly JWT.maxTokenLength bytes
        // (timestamps have 10 digits for centuries, so the length is stable).
        let now = Int64(Date().timeIntervalSince1970)
        func length(_ n: Int, _ room: String) -> Int {
            JWT.sign(TokenClaims(subject: String(repeating: "u", count: n), room: room, issuedAt: now, expiresAt: now + 3600,
                                 canPublish: true), secret: fx.secret).utf8.count
        }
        var found: (Int, String)?
        for r in [room, String(room.dropLast())] {
            if let n = (5000...6200).first(where: { length($0, r) == JWT.maxTokenLength }) { found = (n, r); break }
        }
        let (n, longRoom) = try XCTUnwrap(found)

        for (user, room) in [(String(repeating: "u", count: 39), room), (String(repeating: "u", count: n), longRoom)] {
            let minted = try mint(user, room: room, dataDir: fx.dataDir)
            XCTAssertEqual(minted.status, 0, minted.err)
            // The 287 bytes, now a little more with the "trn" claim: over the old 256 either way.
            XCTAssertEqual(minted.token.utf8.count, user.count > 39 ? 8192 : 303)
            let c = try fx.connect()
            let auth = try c.call(.auth(token: minted.token, room: nil))
            XCTAssertEqual(auth["participant"]?.stringValue, user)
            let join = try c.call(.join(room: nil, publish: true, subscribe: true, suite: nil))
            XCTAssertNotNil(join["srtp"], "\(join)")
            c.close()
        }
        // One byte more than a server accepts is refused when minting, not later.
        let over = try mint(String(repeating: "u", count: n + 2), room: longRoom, dataDir: fx.dataDir)
        XCTAssertEqual(over.status, 2)
        XCTAssertEqual(over.token, "")
        XCTAssertTrue(over.err.contains("8192"), over.err)
    }
}
