import ParleyCore
import ParleySRTP

extension ParticipantCrypto {
    /// Hop-by-hop SRTP for one participant: libsrtp-style contexts for both
    /// directions, named from the relay's side. `inbound` is the key the
    /// participant protects what it publishes with (the relay unprotects with
    /// it); `outbound` is the key the relay protects what it forwards to the
    /// participant with. Replay protection is on (window 1024); the outbound
    /// context allows the identical resend of a packet (NACK retransmissions
    /// from the relay's ring). Drops are counted in `metrics`.
    public static func srtp(inbound: SRTPKeyMaterial, outbound: SRTPKeyMaterial,
                            metrics: SRTPMetrics = .shared) throws(SRTPError) -> ParticipantCrypto {
        let inbound = try SRTPContext(material: inbound, direction: .inbound)
        let outbound = try SRTPContext(material: outbound, direction: .outbound, allowRetransmit: true)
        return ParticipantCrypto(
            unprotect: { packet, isRTCP in
                do throws(SRTPError) {
                    return isRTCP ? try inbound.unprotectRTCP(packet, length: packet.count)
                                  : try inbound.unprotectRTP(packet, length: packet.count)
                } catch {
                    switch error {
                    case .replayed: metrics.replayed.inc()
                    case .authenticationFailed: metrics.authFailed.inc()
                    default: metrics.malformed.inc()
                    }
                    return nil
                }
            },
            protect: { buffer, length, isRTCP in
                do throws(SRTPError) {
                    return isRTCP ? try outbound.protectRTCP(buffer, length: length)
                                  : try outbound.protectRTP(buffer, length: length)
                } catch {
                    metrics.protectFailed.inc()
                    return nil
                }
            })
    }
}

/// SRTP outcomes on the relay's crypto hook (lock-free counters; the hook
/// runs on the packet path). `parley bench srtp` prints the drops at the end.
public final class SRTPMetrics: Sendable {
    public static let shared = SRTPMetrics(.shared)
    public let authFailed: Counter, replayed: Counter, malformed: Counter, protectFailed: Counter

    /// The counters, registered in `registry`.
    public init(_ registry: MetricsRegistry) {
        func dropped(_ reason: String) -> Counter {
            registry.counter("parley_srtp_dropped_total", help: "SRTP/SRTCP packets dropped by the relay, by reason",
                             labels: [("reason", reason)])
        }
        authFailed = dropped("auth_failed")
        replayed = dropped("replay")
        malformed = dropped("malformed")
        protectFailed = registry.counter("parley_srtp_protect_failures_total", help: "Packets the relay could not protect for a subscriber")
    }
}
