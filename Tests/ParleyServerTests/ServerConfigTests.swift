import XCTest
@testable import ParleyServer

final class ServerConfigTests: XCTestCase {
    func testDefaultsMatchTheDesignTable() throws {
        let c = try ServerConfig.resolve(flags: [:], switches: [])
        XCTAssertEqual(c.listen.description, "127.0.0.1:7700")
        XCTAssertEqual(c.mediaPorts, 7710...7749)
        XCTAssertEqual(c.stun?.description, "127.0.0.1:3478")
        XCTAssertEqual(c.dataDir, "./var")
    }

    func testFlagsOverrideTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("parley.json").path
        try #"{"listen": "127.0.0.1:9000", "media-ports": "20000-20003", "stun": "off", "loops": 2, "insecure": true}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let c = try ServerConfig.resolve(flags: ["config": file, "listen": "127.0.0.1:9100"], switches: [])
        XCTAssertEqual(c.listen.port, 9100)
        XCTAssertEqual(c.mediaPorts, 20000...20003)
        XCTAssertNil(c.stun)
        XCTAssertEqual(c.loops, 2)
        XCTAssertTrue(c.insecure)
    }

    func testBadValuesGiveErrorsNamingTheKey() {
        let cases: [(String, String, String)] = [
            ("listen", "nohost", "expected HOST:PORT"),
            ("listen", "127.0.0.1:99999", "port must be"),
            ("media-ports", "7749-7710", "expected A-B"),
            ("log-level", "loud", "must be debug"),
            ("loops", "-1", "must be an integer"),
            ("bogus", "1", "unknown key"),
        ]
        for (key, value, fragment) in cases {
            XCTAssertThrowsError(try ServerConfig.resolve(flags: [key: value], switches: []), "\(key)=\(value)") { e in
                let text = String(describing: e)
                XCTAssertTrue(text.contains(key) && text.contains(fragment), text)
            }
        }
    }

    func testConsentCheckKeys() throws {
        let d = try ServerConfig.resolve(flags: [:], switches: [])
        XCTAssertEqual(d.consentIntervalMilliseconds, 500)
        XCTAssertEqual(d.consentAttempts, 7)
        XCTAssertTrue(d.srtpLatching)
        let c = try ServerConfig.resolve(flags: ["consent-interval": "200", "consent-attempts": "3", "srtp-latching": "false"], switches: [])
        XCTAssertEqual(c.consentIntervalMilliseconds, 200)
        XCTAssertEqual(c.consentAttempts, 3)
        XCTAssertFalse(c.srtpLatching)
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["consent-attempts": "0"], switches: []))
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["consent-interval": "5"], switches: []))
    }

    /// #19: a wildcard media-host needs an announced IP (clients were told to send to 0.0.0.0).
    func testRecordGridKeys() throws {
        XCTAssertNil(try ServerConfig.resolve(flags: [:], switches: []).exportOptions.grid, "off by default")
        let c = try ServerConfig.resolve(flags: ["record-grid-size": "640x360", "record-grid-max-tiles": "4"], switches: ["record-grid"])
        XCTAssertEqual(c.exportOptions.grid?.width, 640)
        XCTAssertEqual(c.exportOptions.grid?.height, 360)
        XCTAssertEqual(c.exportOptions.grid?.maxTiles, 4)
        for (key, value) in [("record-grid-size", "4000x3000"), ("record-grid-size", "641x360"), ("record-grid-size", "big"),
                             ("record-grid-max-tiles", "17"), ("record-grid", "yes")] {
            XCTAssertThrowsError(try ServerConfig.resolve(flags: [key: value], switches: []), "\(key)=\(value)") { e in
                XCTAssertTrue(String(describing: e).contains(key), "\(e)")
            }
        }
    }

    func testMediaAnnounce() throws {
        XCTAssertNil(try ServerConfig.resolve(flags: [:], switches: []).mediaAnnounce)
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["media-host": "0.0.0.0"], switches: [])) { e in
            XCTAssertTrue("\(e)".contains("media-announce"), "\(e)")
        }
        let c = try ServerConfig.resolve(flags: ["media-host": "0.0.0.0", "media-announce": "203.0.113.7"], switches: [])
        XCTAssertEqual(c.mediaAnnounce, "203.0.113.7")
        XCTAssertNoThrow(try ServerConfig.resolve(flags: ["media-announce": "2001:db8::7"], switches: []))
        for bad in ["0.0.0.0", "::", "example.com", "1.2.3"] {
            XCTAssertThrowsError(try ServerConfig.resolve(flags: ["media-announce": bad], switches: []), bad)
        }
    }

    func testInsecureOnlyOnLoopback() {
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["listen": "0.0.0.0:7700"], switches: ["insecure"]))
        XCTAssertNoThrow(try ServerConfig.resolve(flags: ["listen": "[::1]:7700"], switches: ["insecure"]))
    }

    func testFileWithWrongTypesIsRejected() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(getpid()).json").path
        try #"{"insecure": 1}"#.write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["config": file], switches: []))
        try "not json".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["config": file], switches: [])) { e in
            XCTAssertEqual(String(describing: e), "config: \(file):1:1: invalid JSON: unexpected token")
        }
    }

    /// Strict RFC 8259: what Foundation's parser let through on Linux is refused with line:column.
    func testFileIsParsedStrictlyWithLineAndColumn() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("strict-\(getpid()).json").path
        let cases: [(String, String)] = [
            ("{\"loops\": 1,}", "1:13: invalid JSON: expected a key"),
            ("{\n  \"stun\": \"off\",\n  \"loops\": [1,],\n}", "3:15: invalid JSON: unexpected token"),
            ("{\"loops\": 1} // comment", "1:14: invalid JSON: trailing characters"),
            ("{'loops': 1}", "1:2: invalid JSON: expected a key"),
            ("{\"loops\": 01}", "1:13: invalid JSON: leading zero"),
            ("{\"stun\": \"é\", \"loops\": x}", "1:24: invalid JSON: unexpected token"),
            ("{\n  \"loops\": 1,\n  \"stun\": \"off\",\n  \"loops\": 2\n}", "4:3: invalid JSON: duplicate key \"loops\""),
        ]
        for (text, wanted) in cases {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try ServerConfig.resolve(flags: ["config": file], switches: []), text) { e in
                XCTAssertEqual(String(describing: e), "config: \(file):\(wanted)", text)
            }
        }
    }

    func testUnknownKeysSuggestTheNearest() {
        let cases: [(String, String)] = [
            ("lisen", #"unknown key "lisen"; did you mean "listen"?"#),
            ("media-port", #"unknown key "media-port"; did you mean "media-ports"?"#),
            ("logs-level", #"unknown key "logs-level"; did you mean "log-level"?"#),
            ("colour", #"unknown key "colour""#),
        ]
        for (key, wanted) in cases {
            XCTAssertThrowsError(try ServerConfig.resolve(flags: [key: "1"], switches: [])) { e in
                XCTAssertEqual(String(describing: e), "config: \(wanted)")
            }
        }
    }

    func testMediaRelayLimitKeys() throws {
        let d = try ServerConfig.resolve(flags: [:], switches: [])
        XCTAssertEqual([d.nackResendIntervalMs, d.nackBudgetPercent, d.stunRate, d.stunBurst, d.stunSources], [100, 100, 20, 40, 4096])
        let c = try ServerConfig.resolve(flags: ["nack-resend-interval-ms": "250", "nack-budget-percent": "50", "stun-rate": "0",
                                                 "stun-burst": "5", "stun-sources": "64"], switches: [])
        XCTAssertEqual([c.nackResendIntervalMs, c.nackBudgetPercent, c.stunRate, c.stunBurst, c.stunSources], [250, 50, 0, 5, 64])
        // The NACK budget cannot be set past 2x what a subscriber receives.
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["nack-budget-percent": "300"], switches: []))
        XCTAssertThrowsError(try ServerConfig.resolve(flags: ["stun-burst": "0"], switches: []))
    }
}
