import ParleyCore
import Foundation
import Synchronization
import XCTest
import ParleyTestSupport
@testable import ParleyAuth

final class TokenTests: XCTestCase {
    let secret = Array("0123456789abcdef0123456789abcdef".utf8)
    let now: Int64 = 1_700_000_000

    private func claims(exp: Int64? = nil, nbf: Int64? = nil) -> TokenClaims {
        TokenClaims(subject: "alice", room: "standup", issuedAt: now, expiresAt: exp ?? now + 3600, notBefore: nbf,
                    canPublish: true, canRecord: false, isAdmin: false)
    }

    private func makeToken(header: String, payload: String, key: [UInt8]? = nil) -> String {
        let input = Base64.encodeURL(Array(header.utf8)) + "." + Base64.encodeURL(Array(payload.utf8))
        let mac = MAC.hmacSHA256(key: key ?? secret, data: Array(input.utf8))
        return input + "." + Base64.encodeURL(mac)
    }

    func testSignVerifyRoundTrip() throws {
        let c = claims(nbf: now - 10)
        let token = JWT.sign(c, secret: secret)
        XCTAssertEqual(token.split(separator: ".").count, 3)
        XCTAssertFalse(token.contains("="))
        XCTAssertEqual(try JWT.verify(token, secret: secret, now: now), c)
        XCTAssertTrue(c.allowsRoom("standup"))
        XCTAssertFalse(c.allowsRoom("other"))
        XCTAssertTrue(TokenClaims(subject: "b", room: "*", issuedAt: 0, expiresAt: 1).allowsRoom("x"))
        XCTAssertTrue(TokenClaims(subject: "b", issuedAt: 0, expiresAt: 1).allowsRoom("x"))
    }

    /// RFC 7515 Appendix A.1: an HS256 JWS computed by the RFC's authors.
    func testRFC7515AppendixA1SignatureVerifies() throws {
        let keyB64 = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
        let key = try XCTUnwrap(Base64.decodeURL(keyB64))
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
            + ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
            + ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        // The signature matches; the RFC's claims have no "sub", so our claim check rejects them as malformed.
        XCTAssertThrowsError(try JWT.verify(token, secret: key, now: 1_300_000_000)) { error in
            XCTAssertEqual(error as? TokenError, .malformed("invalid or incomplete claims"))
        }
        XCTAssertThrowsError(try JWT.verify(token, secret: Array(key.dropFirst()), now: 1_300_000_000)) { error in
            XCTAssertEqual(error as? TokenError, .badSignature)
        }
    }

    func testRejections() {
        let good = JWT.sign(claims(), secret: secret)
        let parts = good.split(separator: ".").map(String.init)
        func err(_ token: String, now: Int64? = nil) -> TokenError? {
            do { _ = try JWT.verify(token, secret: secret, now: now ?? self.now); return nil } catch { return error }
        }
        XCTAssertEqual(err(JWT.sign(claims(), secret: Array("other-secret-other-secret-000000".utf8))), .badSignature)
        XCTAssertEqual(err(JWT.sign(claims(exp: now), secret: secret)), .expired)
        XCTAssertEqual(err(good, now: now + 3600), .expired)
        XCTAssertNil(err(good, now: now + 3599))
        XCTAssertEqual(err(JWT.sign(claims(nbf: now + 60), secret: secret)), .notYetValid)

        // Tampered claims, same signature.
        let evil = Base64.encodeURL(Array(#"{"adm":true,"exp":9999999999,"sub":"alice"}"#.utf8))
        XCTAssertEqual(err(parts[0] + "." + evil + "." + parts[2]), .badSignature)

        // alg none, with or without a signature; other algorithms.
        let none = Base64.encodeURL(Array(#"{"alg":"none","typ":"JWT"}"#.utf8))
        XCTAssertEqual(err(none + "." + parts[1] + "."), .wrongAlgorithm("none"))
        XCTAssertEqual(err(none + "." + parts[1] + "." + parts[2]), .wrongAlgorithm("none"))
        XCTAssertEqual(err(makeToken(header: #"{"alg":"HS512"}"#, payload: #"{"sub":"a","exp":9999999999}"#)),
                       .wrongAlgorithm("HS512"))
        XCTAssertEqual(err(makeToken(header: #"{"alg":"RS256"}"#, payload: #"{"sub":"a","exp":9999999999}"#)),
                       .wrongAlgorithm("RS256"))

        // Malformed shapes.
        for bad in ["", "a.b", "a.b.c.d", parts[0] + "." + parts[1], parts[0] + ".!!!." + parts[2],
                    "e30.e30.", String(repeating: "a", count: 9000)] {
            guard case .malformed? = err(bad) else { return XCTFail("expected malformed for \(bad.prefix(40))") }
        }
        // Validly signed but missing exp / wrong types / empty sub.
        for payload in [#"{"sub":"a"}"#, #"{"sub":"a","exp":"soon"}"#, #"{"sub":"","exp":9999999999}"#,
                        #"{"sub":"a","exp":9999999999,"pub":"yes"}"#, "not json"] {
            guard case .malformed? = err(makeToken(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: payload)) else {
                return XCTFail("expected malformed for \(payload)")
            }
        }
        // Non-canonical base64url (extra trailing bits) in the signature is refused.
        var sig = Array(parts[2].utf8)
        let last = sig.removeLast()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        let idx = alphabet.firstIndex(of: last)!
        sig.append(alphabet[idx ^ 1])
        guard case .malformed? = err(parts[0] + "." + parts[1] + "." + String(decoding: sig, as: UTF8.self)) else {
            return XCTFail("non-canonical signature accepted")
        }
    }

    func testClaimNamesOnTheWire() throws {
        let token = JWT.sign(TokenClaims(subject: "bob", issuedAt: 10, expiresAt: 20, canRecord: true, isAdmin: true),
                             secret: secret)
        let payload = try XCTUnwrap(Base64.decodeURL(token.split(separator: ".")[1]))
        XCTAssertEqual(String(decoding: payload, as: UTF8.self),
                       #"{"adm":true,"exp":20,"iat":10,"pub":false,"rec":true,"sub":"bob","trn":false}"#)
        let transcoder = JWT.sign(TokenClaims(subject: "enc", issuedAt: 10, expiresAt: 20, canTranscode: true), secret: secret)
        XCTAssertTrue(try JWT.verify(transcoder, secret: secret, now: 15).canTranscode)
        // A token minted before the grant existed (no "trn") grants nothing new.
        XCTAssertFalse(try JWT.verify(token, secret: secret, now: 15).canTranscode)
    }

    func testDurationParsing() {
        XCTAssertEqual(TokenDuration.parse("90s"), 90)
        XCTAssertEqual(TokenDuration.parse("30m"), 1800)
        XCTAssertEqual(TokenDuration.parse("1h"), 3600)
        XCTAssertEqual(TokenDuration.parse("2d"), 172_800)
        XCTAssertEqual(TokenDuration.parse("1h30m"), 5400)
        for bad in ["", "0s", "10", "h", "1x", "-1h", "1.5h", "1 h", "367d", "99999999999999999999s", "١h"] {
            XCTAssertNil(TokenDuration.parse(bad), bad)
        }
    }

    // MARK: Server secret

    private func tempDir() -> String {
        let dir = NSTemporaryDirectory() + "parley-secret-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func testSecretCreatedOnceWithMode0600() throws {
        let dir = tempDir() + "/nested/var"
        let s1 = try ServerSecret.loadOrCreate(dataDir: dir)
        XCTAssertEqual(s1.count, 32)
        XCTAssertNotEqual(s1, [UInt8](repeating: 0, count: 32))
        let attrs = try FileManager.default.attributesOfItem(atPath: dir + "/secret")
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        XCTAssertEqual(try ServerSecret.loadOrCreate(dataDir: dir), s1)
        // No temporary files are left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["secret"])
        // A different directory gets a different secret.
        XCTAssertNotEqual(try ServerSecret.loadOrCreate(dataDir: tempDir()), s1)
    }

    func testSecretConcurrentCreatorsAgree() throws {
        let dir = tempDir()
        let results = Mutex<[[UInt8]]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            if let s = try? ServerSecret.loadOrCreate(dataDir: dir) { results.withLock { $0.append(s) } }
        }
        let all = results.withLock { $0 }
        XCTAssertEqual(all.count, 8)
        XCTAssertEqual(Set(all.map { Base64.encode($0) }).count, 1)
    }

    func testSecretRefusesBadFiles() throws {
        let dir = tempDir()
        _ = try ServerSecret.loadOrCreate(dataDir: dir)
        chmod(dir + "/secret", 0o644)
        XCTAssertThrowsError(try ServerSecret.loadOrCreate(dataDir: dir)) { error in
            guard case .insecurePermissions = error as? ServerSecret.Failure else { return XCTFail("\(error)") }
        }
        chmod(dir + "/secret", 0o600)
        let fh = try XCTUnwrap(FileHandle(forWritingAtPath: dir + "/secret"))
        fh.truncateFile(atOffset: 5)
        fh.closeFile()
        XCTAssertThrowsError(try ServerSecret.loadOrCreate(dataDir: dir)) { error in
            guard case .wrongLength(_, 5)? = error as? ServerSecret.Failure else { return XCTFail("\(error)") }
        }
        // A FIFO planted at the path is refused at once instead of blocking the reader.
        let fifoDir = tempDir()
        XCTAssertEqual(mkdir(fifoDir, 0o700), 0)
        XCTAssertEqual(mkfifo(fifoDir + "/secret", 0o600), 0)
        XCTAssertThrowsError(try ServerSecret.loadOrCreate(dataDir: fifoDir)) { error in
            guard case .notRegularFile? = error as? ServerSecret.Failure else { return XCTFail("\(error)") }
        }
        // So is a symlink (O_NOFOLLOW), even to a good secret.
        let linkDir = tempDir()
        XCTAssertEqual(mkdir(linkDir, 0o700), 0)
        XCTAssertEqual(symlink(dir + "/secret", linkDir + "/secret"), 0)
        XCTAssertThrowsError(try ServerSecret.loadOrCreate(dataDir: linkDir))
    }

    // MARK: parley token (the command is in the `parley` executable, so it runs as a process)

    /// `parley token` reads its flags as documented: --room "*" is any room,
    /// --admin and --can-publish become claims; malformed flags are usage
    /// errors (exit 2, nothing on stdout).
    func testTokenCommandArgumentParsing() throws {
        let dir = tempDir()
        let r = try runTool(parleyBinary, ["token", "--user", "alice", "--room=standup", "--ttl", "30m", "--can-publish",
                                           "--admin", "--data-dir", dir])
        XCTAssertEqual(r.status, 0, r.err)
        let secret = try ServerSecret.loadOrCreate(dataDir: dir)
        let c = try JWT.verify(r.out.trimmingCharacters(in: .whitespacesAndNewlines), secret: secret)
        XCTAssertEqual(c.subject, "alice")
        XCTAssertEqual(c.room, "standup")
        XCTAssertEqual(c.expiresAt - c.issuedAt, 1800)
        XCTAssertTrue(c.canPublish)
        XCTAssertFalse(c.canRecord)
        XCTAssertTrue(c.isAdmin)
        let any = try runTool(parleyBinary, ["token", "--user", "a", "--room", "*", "--data-dir", dir])
        XCTAssertEqual(any.status, 0, any.err)
        XCTAssertNil(try JWT.verify(any.out.trimmingCharacters(in: .whitespacesAndNewlines), secret: secret).room)
        XCTAssertEqual(try runTool(parleyBinary, ["token", "--help"]).status, 0)
        for bad in [[], ["--user"], ["--user", "--room", "r"], ["--user", "a", "--ttl", "forever"],
                    ["--user", "a", "--bogus"], ["--user", "a", "--admin=yes"], ["--user", ""], ["positional"]] {
            let b = try runTool(parleyBinary, ["token"] + bad + ["--data-dir", dir])
            XCTAssertEqual(b.status, 2, "\(bad): \(b.err)")
            XCTAssertEqual(b.out, "", "\(bad)")
        }
    }

    /// Runs `parley token` and checks the output and exit codes.
    func testTokenCommandMintsAVerifiableToken() throws {
        let dir = tempDir()
        let (code, out, _) = try runTool(parleyBinary, ["token", "--user", "alice", "--room", "standup", "--ttl", "1h",
                                                        "--can-publish", "--can-record", "--data-dir", dir])
        XCTAssertEqual(code, 0)
        let token = out.trimmingCharacters(in: .whitespacesAndNewlines)
        let secret = try ServerSecret.loadOrCreate(dataDir: dir)
        let claims = try JWT.verify(token, secret: secret)
        XCTAssertEqual(claims.subject, "alice")
        XCTAssertEqual(claims.room, "standup")
        XCTAssertEqual(claims.expiresAt - claims.issuedAt, 3600)
        XCTAssertTrue(claims.canPublish)
        XCTAssertTrue(claims.canRecord)
        XCTAssertFalse(claims.isAdmin)
        XCTAssertFalse(claims.canTranscode)

        let (tcCode, tcOut, _) = try runTool(parleyBinary, ["token", "--user", "encoder", "--can-transcode", "--data-dir", dir])
        XCTAssertEqual(tcCode, 0)
        let tc = try JWT.verify(tcOut.trimmingCharacters(in: .whitespacesAndNewlines), secret: secret)
        XCTAssertTrue(tc.canTranscode)
        XCTAssertFalse(tc.canPublish || tc.isAdmin)

        let (badCode, badOut, badErr) = try runTool(parleyBinary, ["token", "--user", "alice", "--ttl", "soon", "--data-dir", dir])
        XCTAssertEqual(badCode, 2)
        XCTAssertEqual(badOut, "")
        XCTAssertTrue(badErr.contains("invalid --ttl"), badErr)
        XCTAssertTrue(badErr.contains("usage: parley token"), badErr)

        let (helpCode, helpOut, _) = try runTool(parleyBinary, ["token", "--help"])
        XCTAssertEqual(helpCode, 0)
        XCTAssertTrue(helpOut.contains("--can-publish"))
        XCTAssertTrue(helpOut.contains("--can-transcode"))
    }
}
