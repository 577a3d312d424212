// RFC 7983 §7 first-byte demultiplexing of a media port shared by STUN,
// ZRTP, DTLS, TURN channels and RTP/RTCP:
//
//                  +----------------+
//                  |        [0..3] -+--> STUN
//                  |      [16..19] -+--> ZRTP
//      packet -->  |      [20..63] -+--> DTLS
//                  |      [64..79] -+--> TURN Channel
//                  |    [128..191] -+--> RTP/RTCP
//                  +----------------+
//
// RTP and RTCP on one port (RFC 5761 §4): the second byte of RTCP is its
// packet type, 192...223; RTP payload types are chosen so that the marker
// bit plus PT never lands there.

/// What a datagram on a shared media port is.
public enum MediaPacketKind: Equatable, Sendable {
    case stun
    case zrtp
    case dtls
    case turnChannel
    case rtp
    case rtcp
    /// Nothing RFC 7983 assigns (drop and count).
    case unknown
}

public enum MediaDemultiplexer {
    /// RFC 5761 §4: second-byte range that means RTCP.
    public static let rtcpPacketTypes: ClosedRange<UInt8> = 192...223

    /// Classifies by the first byte (and the second for RTP vs RTCP).
    @inlinable
    public static func classify(_ packet: UnsafeRawBufferPointer) -> MediaPacketKind {
        guard let first = packet.first else { return .unknown }
        switch first {
        case 0...3: return .stun
        case 16...19: return .zrtp
        case 20...63: return .dtls
        case 64...79: return .turnChannel
        case 128...191:
            guard packet.count >= 2 else { return .unknown }
            return rtcpPacketTypes.contains(packet[1]) ? .rtcp : .rtp
        default: return .unknown
        }
    }
}
