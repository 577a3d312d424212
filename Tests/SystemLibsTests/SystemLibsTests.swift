import XCTest
import CLinux
import COpus
import CFFmpeg
import CSRTP
import COpenSSL
import CSQLite

/// One smoke test per system library: it links and does one real thing.
final class SystemLibsTests: XCTestCase {
    func testOpusEncodesOneFrame() {
        var err: Int32 = 0
        let enc = opus_encoder_create(48000, 2, OPUS_APPLICATION_VOIP, &err)
        XCTAssertEqual(err, OPUS_OK)
        defer { opus_encoder_destroy(enc) }
        // 20 ms of a 440 Hz tone, stereo.
        var pcm = [Int16](repeating: 0, count: 960 * 2)
        for i in 0..<960 {
            let s = Int16(8000 * sin(2 * Double.pi * 440 * Double(i) / 48000))
            pcm[2 * i] = s; pcm[2 * i + 1] = s
        }
        var out = [UInt8](repeating: 0, count: 4000)
        let n = opus_encode(enc!, pcm, 960, &out, 4000)
        XCTAssertGreaterThan(n, 0, "opus_encode returned \(n)")
    }

    func testLibavOpensAFormatContext() {
        let ctx = avformat_alloc_context()
        XCTAssertNotNil(ctx)
        var p: UnsafeMutablePointer<AVFormatContext>? = ctx
        avformat_free_context(p)
        p = nil
        XCTAssertNotNil(avcodec_find_encoder(AV_CODEC_ID_AAC))
        XCTAssertNotNil(avcodec_find_encoder_by_name("libx264"))
        XCTAssertNotNil(sws_getContext(64, 64, AV_PIX_FMT_YUV420P, 32, 32, AV_PIX_FMT_YUV420P, SWS_BILINEAR, nil, nil, nil))
    }

    func testSRTPLinksAndReportsItsVersion() {
        // Only link-and-run here: srtp_init() may be called once per process,
        // and ParleySRTP's tests own that call (a second one fails).
        XCTAssertGreaterThanOrEqual(srtp_get_version(), 0x0205_0000, "libsrtp2 >= 2.5")
        XCTAssertTrue(String(cString: srtp_get_version_string()).contains("libsrtp2"))
        var policy = srtp_crypto_policy_t()
        srtp_crypto_policy_set_rtp_default(&policy)
        XCTAssertEqual(policy.auth_tag_len, 10, "AES_CM_128_HMAC_SHA1_80 has a 10-byte tag")
    }

    func testSQLiteInMemory() {
        var db: OpaquePointer?
        XCTAssertEqual(sqlite3_open(":memory:", &db), SQLITE_OK)
        defer { sqlite3_close(db) }
        XCTAssertEqual(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (42);", nil, nil, nil), SQLITE_OK)
        var stmt: OpaquePointer?
        XCTAssertEqual(sqlite3_prepare_v2(db, "SELECT x FROM t", -1, &stmt, nil), SQLITE_OK)
        XCTAssertEqual(sqlite3_step(stmt), SQLITE_ROW)
        XCTAssertEqual(sqlite3_column_int(stmt, 0), 42)
        sqlite3_finalize(stmt)
    }

    func testHMACSHA256MatchesRFC4231Case2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = Array("Jefe".utf8), data = Array("what do ya want for nothing?".utf8)
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        HMAC(EVP_sha256(), key, Int32(key.count), data, data.count, &out, &len)
        XCTAssertEqual(len, 32)
        let hex = out.map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testEpollShimCreatesAnEpollFd() {
        let fd = parley_epoll_create()
        XCTAssertGreaterThanOrEqual(fd, 0)
        close(fd)
    }
}
