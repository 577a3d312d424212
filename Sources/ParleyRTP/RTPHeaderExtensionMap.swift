import ParleyCore

/// The RFC 8285 header extensions Parley understands, and the local ids one
/// peer negotiated for them (`a=extmap` in its SDP; 0: not negotiated).
/// Publishers and subscribers negotiate ids on their own, so a forwarded
/// packet's elements are renumbered per subscriber (`rewrite`).
public struct RTPHeaderExtensionMap: Equatable, Sendable {
    /// `urn:ietf:params:rtp-hdrext:sdes:mid` (RFC 8843).
    public var mid: UInt8 = 0
    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time` (3 bytes, 6.18 fixed-point seconds).
    public var absSendTime: UInt8 = 0
    /// `http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01` (2 bytes: the transport-wide sequence number).
    public var transportSequence: UInt8 = 0
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (RFC 6464).
    public var audioLevel: UInt8 = 0
    /// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id` (RFC 8852: the simulcast layer's rid).
    public var rid: UInt8 = 0
    /// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id` (RFC 8852).
    public var repairedRid: UInt8 = 0

    public init(mid: UInt8 = 0, absSendTime: UInt8 = 0, transportSequence: UInt8 = 0, audioLevel: UInt8 = 0,
                rid: UInt8 = 0, repairedRid: UInt8 = 0) {
        self.mid = mid
        self.absSendTime = absSendTime
        self.transportSequence = transportSequence
        self.audioLevel = audioLevel
        self.rid = rid
        self.repairedRid = repairedRid
    }

    /// Whether no extension was negotiated.
    public var isEmpty: Bool { self == RTPHeaderExtensionMap() }

    /// The transport-wide sequence number of `packet`, if it carries one.
    @inline(__always)
    public func transportSequenceNumber(_ packet: RTPPacketView) -> UInt16? {
        guard transportSequence != 0, let d = packet.extensionElement(id: transportSequence), d.count >= 2 else { return nil }
        return d.u16(0)
    }

    /// Renumbers the header extension elements of the RTP packet in the
    /// first `length` bytes of `packet`, in place, from the ids `source`
    /// negotiated (the publisher's) to `self`'s (the subscriber's). The
    /// packet's length never changes: an element the subscriber did not
    /// negotiate, or whose value names the publisher's side (mid, rid,
    /// repaired rid: the subscriber receives one stream on its own section),
    /// is overwritten with padding (zero bytes, RFC 8285 §4.2). The
    /// transport-wide sequence number becomes `transportSequence` (the
    /// subscriber's own count, incremented when written) and abs-send-time
    /// `absSendTime` (the relay's send time). No allocation; a packet that
    /// does not parse is left as it is.
    public func rewrite(_ packet: UnsafeMutableRawBufferPointer, length: Int, from source: RTPHeaderExtensionMap,
                        transportSequence: inout UInt16, absSendTime: UInt32) {
        guard length >= RTP.fixedHeaderSize, length <= packet.count, packet[0] & RTP.extensionBit != 0 else { return }
        let start = RTP.csrcOffset + 4 * Int(packet[0] & RTP.csrcCountMask)
        guard length >= start + 4 else { return }
        let format = RTPHeaderExtensionFormat(profile: UnsafeRawBufferPointer(packet).u16(start))
        let bodyStart = start + 4
        let bodyEnd = bodyStart + 4 * Int(UnsafeRawBufferPointer(packet).u16(start + 2))
        guard bodyEnd <= length, format != .opaque else { return }
        let body = UnsafeMutableRawBufferPointer(rebasing: packet[bodyStart..<bodyEnd])
        var at = 0
        while true {
            guard case let .element(id, range, next) = RTPHeaderExtensionElements.step(UnsafeRawBufferPointer(body), format, at) else { return }
            at = next
            let headerBytes = format == .oneByte ? 1 : 2
            let target: UInt8
            switch id {
            case source.absSendTime where range.count == 3:
                target = self.absSendTime
                if target != 0 { body.put24(absSendTime & 0xFF_FFFF, at: range.lowerBound) }
            case source.transportSequence where range.count == 2 && self.transportSequence != 0:
                target = self.transportSequence
                body.put16(transportSequence, at: range.lowerBound)
                transportSequence &+= 1
            case source.audioLevel where source.audioLevel != 0:
                target = self.audioLevel
            default:
                target = 0 // mid, rid, repaired rid, or not understood
            }
            let elementStart = range.lowerBound - headerBytes
            if target == 0 || (format == .oneByte && target >= RTP.oneByteStopID) {
                for i in elementStart..<range.upperBound { body[i] = 0 }
            } else if format == .oneByte {
                body[elementStart] = target << 4 | (body[elementStart] & 0x0F)
            } else {
                body[elementStart] = target
            }
        }
    }

    /// abs-send-time for a monotonic time in nanoseconds: seconds in 6.18 fixed point, 24 bits.
    @inline(__always)
    public static func absSendTime(nanoseconds: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((nanoseconds / 1000) << 18) / 1_000_000) & 0xFF_FFFF
    }
}
