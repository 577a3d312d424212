import Foundation
import XCTest
@testable import ParleyRTP
import ParleyTestSupport

final class TsharkDissectionTests: XCTestCase {
    let rtpPort: UInt16 = 5004
    let rtcpPort: UInt16 = 5005

    func testTsharkDissectsOurRTPAndRTCP() throws {
        var pcap = UDPPcap()
        // RTP: Opus-like PT 111 with a one-byte header extension (audio level), then a plain VP8-like packet.
        let rtp1 = RTPPacket(header: RTPHeader(marker: true, payloadType: 111, sequenceNumber: 4242, timestamp: 960_000,
                                               ssrc: 0x1122_3344, extensionProfile: RTP.oneByteExtensionProfile,
                                               extensions: [RTPHeaderExtension(id: 1, data: [0x85])]),
                             payload: Array(repeating: 0xAB, count: 40))
        let rtp2 = RTPPacket(header: RTPHeader(payloadType: 96, sequenceNumber: 4243, timestamp: 963_000, ssrc: 0x5566_7788,
                                               csrcs: [0x0000_0001]),
                             payload: Array(repeating: 0xCD, count: 100), paddingSize: 4)
        pcap.append(try rtp1.encoded(), from: 40000, to: rtpPort)
        pcap.append(try rtp2.encoded(), from: 40000, to: rtpPort)

        var stats = RTPReceiveStatistics(clockRate: 48000, probation: 0)
        for s: UInt16 in [1, 2, 4] { stats.update(sequenceNumber: s, timestamp: UInt32(s) * 960, arrivalTime: UInt64(s) * 20_000_000) }
        let sr = RTCPSenderReport(ssrc: 0x1122_3344, ntpTimestamp: 0xE8F0_0000_8000_0000, rtpTimestamp: 960_000,
                                  packetCount: 100, octetCount: 16000, reports: [stats.makeReportBlock(ssrc: 0x5566_7788, now: 0)])
        let compounds: [[RTCPPacket]] = [
            [.senderReport(sr), .sourceDescription(RTCPSourceDescription(ssrc: 0x1122_3344, cname: "parley-cname"))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC, reports: [RTCPReportBlock(ssrc: 0x1122_3344, fractionLost: 25,
                                                                                               cumulativeLost: 3, extendedHighestSequence: 70000,
                                                                                               jitter: 17)]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .genericNACK(RTCPGenericNACK(senderSSRC: 0x99AA_BBCC, mediaSSRC: 0x1122_3344, lost: [100, 101, 103, 200]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .pictureLossIndication(RTCPPictureLossIndication(senderSSRC: 0x99AA_BBCC, mediaSSRC: 0x5566_7788))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .fullIntraRequest(RTCPFullIntraRequest(senderSSRC: 0x99AA_BBCC, entries: [RTCPFIREntry(ssrc: 0x5566_7788, sequenceNumber: 9)]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .receiverEstimatedMaximumBitrate(RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 0x99AA_BBCC, bitrate: 1_500_000,
                                                                                  ssrcs: [0x1122_3344, 0x5566_7788]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x1122_3344)),
             .goodbye(RTCPGoodbye(sources: [0x1122_3344], reason: Array("call ended".utf8)))],
        ]
        for c in compounds { pcap.append(try RTCPPacket.encodeCompound(c), from: 40001, to: rtcpPort) }

        let text = try tshark(pcap, ["-o", "rtp.heuristic_rtp:TRUE", "-o", "rtcp.heuristic_rtcp:TRUE",
                                     "-d", "udp.port==\(rtpPort),rtp", "-d", "udp.port==\(rtcpPort),rtcp", "-V"])
        assertCleanDissection(text)
        let expected = [
            // RTP
            "Synchronization Source identifier: 0x11223344", "Sequence number: 4242", "Timestamp: 960000",
            "Payload type: DynamicRTP-Type-111 (111)", "Marker: True",
            "Synchronization Source identifier: 0x55667788", "Sequence number: 4243", "Padding: True",
            "Contributing source identifiers count: 1", "CSRC item 0: 0x1",
            "RFC 5285 Header Extension (One-Byte Header)", "Extension Data: 85",
            // RTCP
            "Packet type: Sender Report (200)", "Sender SSRC: 0x11223344", "Sender's packet count: 100",
            "Text: parley-cname",
            "Packet type: Receiver Report (201)", "Fraction lost: 25 / 256", "Cumulative number of packets lost: 3",
            "Extended highest sequence number received: 70000", "Interarrival jitter: 17",
            "Packet type: Generic RTP Feedback (205)", "RTCP Transport Feedback NACK PID: 100",
            "Packet type: Payload-specific Feedback (206)", "Picture Loss Indication",
            "Full Intra Request (FIR) Command (4)", "Command Sequence Number: 9",
            "REMB: max bitrate=1500000", "Maximum bit rate: 1500000", "SSRC: 0x55667788",
            "Packet type: Goodbye (203)", "call ended",
        ]
        for field in expected {
            XCTAssertTrue(text.contains(field), "tshark output lacks \"\(field)\"")
        }
        XCTAssertEqual(text.components(separatedBy: "Real-Time Transport Protocol\n").count - 1, 2, "two RTP packets")
    }
}
