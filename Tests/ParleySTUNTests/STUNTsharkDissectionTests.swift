import Foundation
import XCTest
@testable import ParleySTUN
import ParleyTestSupport

final class STUNTsharkDissectionTests: XCTestCase {
    func testTsharkDissectsOurSTUNResponses() throws {
        let key = Array("alice-secret-password".utf8)
        let lookup: (UnsafeRawBufferPointer) -> STUNCredential<Int>? = { u in
            String(decoding: u, as: UTF8.self) == "room1:alice" ? STUNCredential(key: key, participant: 1) : nil
        }
        func request(_ id: UInt32, user: String, extra: STUNAttributeType? = nil) throws -> [UInt8] {
            try build(.bindingRequest, STUNTransactionID(id, 2, 3)) { w in
                try w.append(.username, bytes: Array(user.utf8))
                try w.append(.priority, uint32: 0x6E00_01FF)
                try w.append(.iceControlling, uint64: 0x1122_3344_5566_7788)
                try w.appendUseCandidate()
                if let t = extra { try w.append(t, bytes: [0, 0, 0, 0]) }
                try w.appendMessageIntegrity(key: key)
                try w.appendFingerprint()
            }
        }
        let responder = BindingResponder(software: "parley test")
        var pcap = UDPPcap()
        let cases: [([UInt8], STUNAddress)] = [
            (try request(1, user: "room1:alice"), STUNAddress("203.0.113.7", port: 50000)!),
            (try request(2, user: "room1:alice"), STUNAddress("2001:db8::7", port: 50001)!),
            (try request(3, user: "room1:mallory"), STUNAddress("203.0.113.8", port: 50002)!),
            (try request(4, user: "room1:alice", extra: STUNAttributeType(0x7F31)), STUNAddress("203.0.113.9", port: 50003)!),
        ]
        for (req, source) in cases {
            pcap.append(req, from: 40000, to: 3478)
            var out = [UInt8](repeating: 0, count: 512)
            let n = try req.withUnsafeBytes { r in
                try out.withUnsafeMutableBytes { o in try responder.respond(to: r, from: source, into: o, credentials: lookup).length }
            }
            pcap.append(Array(out[0..<n]), from: 3478, to: 40000)
        }
        let text = try tshark(pcap, ["-V"])
        // Our own request carries the unknown attribute on purpose (to get the 420).
        assertCleanDissection(text, allowing: ["Unknown attribute 0x7f31"])
        for field in [
            "Message Type: 0x0001 (Binding Request)", "Message Type: 0x0101 (Binding Success Response)",
            "Message Type: 0x0111 (Binding Error Response)",
            "XOR-MAPPED-ADDRESS: 203.0.113.7:50000", "XOR-MAPPED-ADDRESS: 2001:db8::7:50001",
            "ERROR-CODE 401 (Unauthenticated): Unauthorized", "ERROR-CODE 420 (Unknown Attribute): Unknown Attribute",
            "Unknown Attribute: 0x7f31", "Software: parley test", "USERNAME: room1:alice", "PRIORITY", "USE-CANDIDATE", "ICE-CONTROLLING",
            "MESSAGE-INTEGRITY", "FINGERPRINT",
        ] {
            XCTAssertTrue(text.contains(field), "tshark output lacks \"\(field)\"")
        }
    }
}
