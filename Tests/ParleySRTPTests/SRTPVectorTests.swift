import XCTest
@testable import ParleySRTP

/// Published test vectors: RFC 3711 Appendix B.2 (AES-CM keystream), B.3
/// (key derivation) and RFC 7714 §16.1.1 (AEAD_AES_128_GCM SRTP packet).
final class SRTPVectorTests: XCTestCase {
    private func hex(_ s: String) -> [UInt8] {
        let c = Array(s.filter { !$0.isWhitespace }.utf8)
        return stride(from: 0, to: c.count, by: 2).map { UInt8(String(decoding: c[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    func testRFC3711AppendixB2AESCMKeystream() throws {
        let keystream = try AESCMKeystream(key: hex("2B7E151628AED2A6ABF7158809CF4F3C"))
        var iv = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")
        var stream = [UInt8](repeating: 0, count: 16 * 0xFF02)
        let ok = stream.withUnsafeMutableBufferPointer { s in
            iv.withUnsafeMutableBufferPointer { keystream.apply(iv: $0.baseAddress!, s.baseAddress!, s.count) }
        }
        XCTAssertTrue(ok)
        func block(_ n: Int) -> [UInt8] { Array(stream[n * 16..<n * 16 + 16]) }
        XCTAssertEqual(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"))
        XCTAssertEqual(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"))
        XCTAssertEqual(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"))
        XCTAssertEqual(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"))
        XCTAssertEqual(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"))
        XCTAssertEqual(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"))
    }

    func testRFC3711AppendixB3KeyDerivation() throws {
        let m = try SRTPKeyMaterial(suite: .aesCM128HmacSHA1_80, masterKey: hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
                                    masterSalt: hex("0EC675AD498AFEEBB6960B3AABE6"))
        let keys = try SRTPSessionKeys(deriving: m)
        XCTAssertEqual(keys.rtpKey, hex("C61E7A93744F39EE10734AFE3FF7A087"))
        XCTAssertEqual(keys.rtpSalt, hex("30CBBC08863D8C85D49DB34A9AE1"))
        XCTAssertEqual(keys.rtpAuthKey, hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"))
        XCTAssertEqual(keys.rtcpKey.count, 16)
        XCTAssertNotEqual(keys.rtcpKey, keys.rtpKey, "labels 3…5 give different keys")
        XCTAssertNotEqual(keys.rtcpAuthKey, keys.rtpAuthKey)
    }

    /// RFC 7714 §16.1.1 / §16.1.2: the session key and salt are given
    /// directly; SSRC 0x5501a0b2, ROC 0, SEQ 0xf17b.
    func testRFC7714Section16AEADAES128GCMPacket() throws {
        let key = hex("000102030405060708090a0b0c0d0e0f"), salt = hex("517569642070726f2071756f")
        let keys = SRTPSessionKeys(rtpKey: key, rtpSalt: salt, rtcpKey: key, rtcpSalt: salt)
        let plain = hex("8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573")
        let expected = hex("""
            8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833
            899d7f27beb16a9152cf765ee4390cce
            """)
        let tx = try SRTPContext(suite: .aeadAES128GCM, keys: keys, direction: .outbound)
        XCTAssertEqual(try tx.protect(plain), expected)
        let rx = try SRTPContext(suite: .aeadAES128GCM, keys: keys, direction: .inbound)
        var tampered = expected
        tampered[20] ^= 1
        XCTAssertThrowsError(try rx.unprotect(tampered)) { XCTAssertEqual($0 as? SRTPError, .authenticationFailed) }
        XCTAssertEqual(try rx.unprotect(expected), plain)
        XCTAssertThrowsError(try rx.unprotect(expected)) { XCTAssertEqual($0 as? SRTPError, .replayed) }
    }
}
