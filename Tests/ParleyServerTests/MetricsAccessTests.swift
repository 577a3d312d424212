import Foundation
import XCTest
import ParleyCore
import ParleyHTTP
import ParleyIO
@testable import ParleyServer
@testable import ParleyWeb
@testable import ParleyAuth
import ParleyTestSupport

/// `/metrics` names rooms in its labels, so by default (`metrics-access`
/// `loopback`) only clients on the host itself read it without a token;
/// from any other address it needs an `adm` token.
final class MetricsAccessTests: XCTestCase {
    var group: EventLoopGroup!
    var servers: [HTTPServer] = []
    let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }

    override func setUpWithError() throws {
        group = try EventLoopGroup(numberOfThreads: 1, logger: quietLogger)
    }

    override func tearDown() {
        servers.forEach { $0.stop() }
        group.syncShutdownGracefully()
    }

    /// Serves the built-in routes on 0.0.0.0 (port 0); returns the port.
    func serve(_ access: MetricsAccess) throws -> Int {
        let router = HTTPRouter()
        BuiltinRoutes.install(on: router, access: access, secret: secret)
        let s = HTTPServer(group: group, router: router, tls: nil, logger: quietLogger)
        servers.append(s)
        return Int(try s.start(at: SocketAddress("0.0.0.0:0")!).port)
    }

    /// This host's first non-loopback IPv4 address, which the kernel also uses as the source.
    func externalAddress() throws -> String {
        let r = try runTool("hostname", ["-I"])
        guard let ip = r.out.split(separator: " ").map(String.init).first(where: { !$0.contains(":") && !$0.hasPrefix("127.") }) else {
            throw XCTSkip("this host has no non-loopback IPv4 address")
        }
        return ip.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func status(_ host: String, _ port: Int, token: String? = nil) throws -> String {
        let auth = token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []
        return try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}"] + auth + ["http://\(host):\(port)/metrics"]).out
    }

    func token(admin: Bool) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return JWT.sign(TokenClaims(subject: "ops", room: nil, issuedAt: now, expiresAt: now + 600, canPublish: true, isAdmin: admin),
                        secret: secret)
    }

    func testLoopbackClientsReadMetricsOthersNeedAnAdminToken() throws {
        let ip = try externalAddress()
        let port = try serve(.loopback)
        XCTAssertEqual(try status("127.0.0.1", port), "200")
        XCTAssertEqual(try status(ip, port), "401", "a client from \(ip) without a token")
        XCTAssertEqual(try status(ip, port, token: token(admin: false)), "403")
        XCTAssertEqual(try status(ip, port, token: "not.a.token"), "401")
        XCTAssertEqual(try status(ip, port, token: token(admin: true)), "200")
        let r = try runTool("curl", ["-s", "-H", "Authorization: Bearer \(token(admin: true))", "http://\(ip):\(port)/metrics"])
        XCTAssertTrue(r.out.contains("# TYPE parley_http_requests_total counter"), r.out)
        XCTAssertEqual(try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://\(ip):\(port)/healthz"]).out, "200",
                       "/healthz stays public")
    }

    func testAdminAccessNeedsATokenEvenOnLoopbackAndPublicNeedsNone() throws {
        let adminOnly = try serve(.admin)
        XCTAssertEqual(try status("127.0.0.1", adminOnly), "401")
        XCTAssertEqual(try status("127.0.0.1", adminOnly, token: token(admin: true)), "200")
        let ip = try externalAddress()
        let open = try serve(.public)
        XCTAssertEqual(try status(ip, open), "200")
    }

    func testConfigKey() throws {
        var c = ServerConfig()
        XCTAssertEqual(c.metricsAccess, .loopback)
        try c.set("metrics-access", "admin")
        XCTAssertEqual(c.metricsAccess, .admin)
        XCTAssertThrowsError(try c.set("metrics-access", "everyone"))
    }
}
