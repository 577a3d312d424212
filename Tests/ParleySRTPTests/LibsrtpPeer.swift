import CSRTP
import XCTest
@testable import ParleySRTP

/// libsrtp2 (Debian's system build) as an independent SRTP peer for the
/// cross-check tests. Test-only: Parley's packet path does not use libsrtp.
final class LibsrtpPeer {
    enum Failure: Error, Equatable { case status(UInt32) }

    private static let initStatus: srtp_err_status_t = srtp_init()
    private var session: srtp_t?

    init(material: SRTPKeyMaterial, outbound: Bool, window: Int = 1024, rtcpAuthenticateOnly: Bool = false) throws {
        guard Self.initStatus == srtp_err_status_ok else { throw Failure.status(Self.initStatus.rawValue) }
        var policy = srtp_policy_t()
        switch material.suite {
        case .aesCM128HmacSHA1_80:
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        case .aeadAES128GCM:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        }
        // SRTCP with E = 0: authenticated, payload in the clear (RFC 3711 §3.4).
        if rtcpAuthenticateOnly { policy.rtcp.sec_serv = sec_serv_auth }
        policy.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound
        policy.window_size = UInt(window)
        policy.next = nil
        var key = material.keyAndSalt
        var created: srtp_t?
        let status = key.withUnsafeMutableBufferPointer { k -> srtp_err_status_t in
            policy.key = k.baseAddress
            return srtp_create(&created, &policy)
        }
        guard status == srtp_err_status_ok else { throw Failure.status(status.rawValue) }
        session = created
    }

    deinit { if let session { srtp_dealloc(session) } }

    private typealias Call = (srtp_t?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> srtp_err_status_t

    private func run(_ packet: [UInt8], _ call: Call) throws -> [UInt8] {
        var buf = packet + [UInt8](repeating: 0, count: 64)
        var len = Int32(packet.count)
        let status = buf.withUnsafeMutableBytes { call(session, $0.baseAddress, &len) }
        guard status == srtp_err_status_ok else { throw Failure.status(status.rawValue) }
        return Array(buf.prefix(Int(len)))
    }

    func protect(_ packet: [UInt8], rtcp: Bool = false) throws -> [UInt8] {
        try run(packet, rtcp ? srtp_protect_rtcp : srtp_protect)
    }

    func unprotect(_ packet: [UInt8], rtcp: Bool = false) throws -> [UInt8] {
        try run(packet, rtcp ? srtp_unprotect_rtcp : srtp_unprotect)
    }
}
