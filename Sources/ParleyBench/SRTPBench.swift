import ParleyRTP
import Foundation
import ParleyCore
import ParleyIO
import ParleyRelay
import ParleyProtocol
import ParleySRTP
import ParleyDTLS

/// `parley bench srtp`: the relay with Parley's hop-by-hop SRTP hooks as a
/// benchmark server on one event loop (one core), for tools/bench/srtp-relay.
///
/// Topology (as `parley bench relay`): one room, participant `i` at
/// `127.0.0.1:(client-base + i)`; the first `publishers` publish one track
/// with SSRC `ssrc-base + i`; everyone receives every track. Each
/// participant's SRTP keys are fixed functions of `i` (`key(participant:_:)`,
/// mirrored in tools/bench/srtp-relay-load.c). Addresses are latched before the
/// load starts with authenticated STUN Bindings sent from each participant's
/// port, so no trusted shortcut is used. `--mode plain` runs the same server
/// without crypto hooks (the baseline).
///
/// `--mode dtls`: every participant joins as a WebRTC participant instead
/// (ICE-lite, consent, DTLS-SRTP on the media port, `--suite` the only
/// `use_srtp` profile), latches through STUN like a browser, and runs a real
/// DTLS handshake with the relay from its port (`DTLSBenchClient`); the
/// relay keys it from the handshake, as it keys a browser. The keys each
/// participant exported are written to `--keys-out` (a line per participant:
/// `i send-hex receive-hex`, master key ‖ salt) for the load generator.
///
/// Prints `ready <host:port> …` once set up, then runs until SIGINT/SIGTERM.
public enum SRTPBench {
    static let usage = """
    Usage: parley bench srtp [options]

    Runs the relay with SRTP hooks as a benchmark server (see tools/bench/srtp-relay).

    Options:
      --listen HOST:PORT    media socket (default 127.0.0.1:40100)
      --participants N      participants in the room (default 11)
      --publishers N        publishers, the first N participants (default 1)
      --client-base PORT    first participant's port on 127.0.0.1 (default 42000)
      --ssrc-base N         first participant's SSRC (default 8192)
      --kind audio|video    track kind (default audio)
      --mode srtp|plain|dtls with SDES-style fixed keys, without crypto, or keyed by a
                            DTLS handshake per participant (default srtp)
      --keys-out FILE       dtls: where the exported keys go (default ./srtp-keys.txt)
      --suite NAME          AES_CM_128_HMAC_SHA1_80 (default) or AEAD_AES_128_GCM
      --batch N             datagrams per recvmmsg/sendmmsg (default 64)

    """

    /// Participant `i`'s master key ‖ salt for one direction:
    /// byte j = (i·131 + j·7 + 1 + 100·receive) mod 256.
    public static func key(participant i: Int, receive: Bool, suite: SRTPSuite = .default) -> SRTPKeyMaterial {
        let bytes = (0..<(suite.keyLength + suite.saltLength)).map { j in
            UInt8(truncatingIfNeeded: i &* 131 &+ j &* 7 &+ 1 &+ (receive ? 100 : 0))
        }
        return try! SRTPKeyMaterial(suite: suite, keyAndSalt: bytes)
    }

    /// `--mode dtls`: each participant joins as a WebRTC peer, latches through
    /// ICE from its port, and keys itself and the relay by a DTLS handshake;
    /// the exported keys go to `keysOut`.
    static func joinWithDTLS(_ relay: Relay, participants per: Int, publishers pubs: Int, clientBase base: Int, ssrcBase: Int,
                             kind: String, suite: SRTPSuite, keysOut: String) throws {
        let server = try DTLSContext(certificate: .generate(), profiles: [suite])
        let client = try DTLSContext(certificate: .generate(), profiles: [suite])
        var lines = ""
        func hex(_ k: SRTPKeyMaterial) -> String { Hex.encode(k.keyAndSalt) }
        for i in 0..<per {
            let ssrc = UInt32(ssrcBase + i)
            let spec: TrackDescription = kind == "video" ? .video(ssrc: ssrc) : .opus(ssrc: ssrc)
            // The participant's own ICE credentials (its offer's), which the relay's consent checks carry.
            let transport = WebRTCTransport(context: server, remoteFingerprint: client.certificate.fingerprint,
                                            remoteUfrag: "bench\(i)", remotePassword: "benchpassword\(i)-0123456789", receive: [:])
            let g = try setupWait { relay.join(room: "bench", name: "p\(i)", tracks: i < pubs ? [spec] : [], webrtc: transport,
                                               completion: $0) }
            if i < pubs { _ = try setupWait { relay.publish(room: "bench", name: "p\(i)", track: spec, completion: $0) } }
            _ = try SDPSession.latchLocalPort(relay: relay.workers[0].localAddress, ufrag: g.ufrag, password: g.password,
                                              consentUfrag: g.consentUfrag, consentPassword: g.consentPassword,
                                              port: UInt16(base + i))
            let keys = try DTLSBenchClient.handshake(relay: relay.workers[0].localAddress, port: UInt16(base + i), context: client,
                                                     serverFingerprint: server.certificate.fingerprint)
            guard keys.suite == suite else { throw DTLSBenchClient.Failure(description: "negotiated \(keys.suite), not \(suite)") }
            lines += "\(i) \(hex(keys.local)) \(hex(keys.remote))\n"
        }
        guard FileManager.default.createFile(atPath: keysOut, contents: Data(lines.utf8)) else {
            throw DTLSBenchClient.Failure(description: "cannot write \(keysOut)")
        }
    }

    public static func main(_ argv: [String]) -> Int32 {
        let args: Arguments
        do {
            args = try Arguments(argv, options: ["listen", "participants", "publishers", "client-base", "ssrc-base",
                                                 "kind", "mode", "batch", "suite", "keys-out"], flags: [])
        } catch {
            printError("parley bench srtp: \(error)\n\(usage)", terminator: "")
            return ExitCode.usage
        }
        if args.wantsHelp { print(usage, terminator: ""); return ExitCode.ok }
        func int(_ name: String, _ d: Int) -> Int? { args[name].map { Int($0) } ?? d }
        let kind = args["kind"] ?? "audio", mode = args["mode"] ?? "srtp"
        guard let suite = SRTPSuite(sdesName: args["suite"] ?? SRTPSuite.default.sdesName) else {
            printError("parley bench srtp: unknown --suite\n\(usage)", terminator: "")
            return ExitCode.usage
        }
        guard let listen = SocketAddress(args["listen"] ?? "127.0.0.1:40100"),
              let per = int("participants", 11), let pubs = int("publishers", 1), let base = int("client-base", 42000),
              let ssrcBase = int("ssrc-base", 8192), let batch = int("batch", 64),
              per > 1, (1...per).contains(pubs), base > 0, base + per <= 65536, ssrcBase > 0, batch > 0,
              ["audio", "video"].contains(kind), ["srtp", "plain", "dtls"].contains(mode) else {
            printError("parley bench srtp: bad option value\n\(usage)", terminator: "")
            return ExitCode.usage
        }
        let group: EventLoopGroup
        let relay: Relay
        do {
            group = try EventLoopGroup(numberOfThreads: 1, shutdownSignals: [SIGINT, SIGTERM],
                                       logger: Logger(label: "parley.bench", level: .warn))
            var config = RelayConfig()
            config.participantTimeout = .zero
            config.maxParticipantsPerRoom = max(per, 50)
            config.batchSize = batch
            relay = try Relay(loops: group.loops, mediaAddresses: [listen], config: config)
            if mode == "dtls" {
                try joinWithDTLS(relay, participants: per, publishers: pubs, clientBase: base, ssrcBase: ssrcBase, kind: kind,
                                 suite: suite, keysOut: args["keys-out"] ?? "srtp-keys.txt")
            }
            for i in 0..<per where mode != "dtls" {
                let ssrc = UInt32(ssrcBase + i)
                let spec: TrackDescription = kind == "video" ? .video(ssrc: ssrc) : .opus(ssrc: ssrc)
                let crypto = mode == "srtp"
                    ? try ParticipantCrypto.srtp(inbound: key(participant: i, receive: false, suite: suite),
                                                 outbound: key(participant: i, receive: true, suite: suite))
                    : nil
                let g = try joinForBench(relay, room: "bench", name: "p\(i)", publishing: i < pubs ? spec : nil, crypto: crypto)
                _ = try SDPSession.latchLocalPort(relay: relay.workers[0].localAddress, ufrag: g.ufrag, password: g.password,
                                                  consentUfrag: g.consentUfrag, consentPassword: g.consentPassword,
                                                  port: UInt16(base + i))
            }
            try subscribeEveryone(relay, room: "bench")
        } catch {
            printError("parley bench srtp: \(error)")
            return ExitCode.failure
        }
        print("ready \(relay.endpoints[0]) mode=\(mode) suite=\(suite.sdesName) participants=\(per) publishers=\(pubs) kind=\(kind)")
        fflush(nil)
        group.waitForShutdownSignal()
        let m = SRTPMetrics.shared
        printError("srtp drops: auth_failed=\(m.authFailed.current) replay=\(m.replayed.current) malformed=\(m.malformed.current) protect_failed=\(m.protectFailed.current)")
        return ExitCode.ok
    }
}
