import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyRelay
import ParleyTranscode

/// Wires the daemon's parts together and runs until SIGINT/SIGTERM:
/// one event loop per core, a media UDP socket per loop (the relay), the
/// plain STUN service, and the HTTP/WebSocket listener (signalling, admin,
/// metrics, HLS files, transcoding jobs).
enum Daemon {
    struct StartError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    static func run(config: ServerConfig) -> Int32 {
        let log = Logger(label: "serve", level: config.logLevel)
        let group: EventLoopGroup
        let parts: Parts
        do {
            try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
            let loops = config.loops == 0 ? EventLoopGroup.coreCount : config.loops
            group = try EventLoopGroup(numberOfThreads: loops, shutdownSignals: [SIGINT, SIGTERM])
            do {
                parts = try start(config: config, group: group, log: log)
            } catch {
                group.syncShutdownGracefully()
                throw error
            }
        } catch {
            log.error("cannot start", ["error": .string(String(describing: error))])
            FileHandle.standardError.write(Data("parley serve: \(error)\n".utf8))
            return ExitCode.failure
        }
        // SIGINT/SIGTERM shut the loops down gracefully: every socket and
        // connection on them is told, pending writes are flushed, fds closed.
        let signal = group.waitForShutdownSignal()
        parts.stop() // what is left off the loops (nothing blocks: the loops refuse new tasks)
        log.info("stopped", ["signal": .int(Int(signal ?? 0))])
        return ExitCode.ok
    }

    /// What `start` brought up, so it can be stopped in order.
    struct Parts {
        var http: HTTPServer
        var relay: Relay
        var stun: STUNService?

        func stop() {
            http.stop()
            if let stun { stun.loop.execute { stun.close() } }
            relay.shutdown()
        }
    }

    static func address(_ hp: ServerConfig.HostPort, key: String) throws -> SocketAddress {
        let host = hp.host == "localhost" ? "127.0.0.1" : hp.host
        guard let a = SocketAddress(ip: host, port: UInt16(hp.port)) else {
            throw StartError("\(key): \(hp.host) is not an IP address")
        }
        return a
    }

    static func start(config: ServerConfig, group: EventLoopGroup, log: Logger) throws -> Parts {
        // Media: one UDP port per loop, from the front of the range.
        let loops = group.loops
        guard config.mediaPorts.count >= loops.count else {
            throw StartError("media-ports \(config.mediaPorts.lowerBound)-\(config.mediaPorts.upperBound) has fewer ports than the \(loops.count) event loops")
        }
        let mediaAddresses = try loops.indices.map { i in
            try address(.init(host: config.mediaHost, port: config.mediaPorts.lowerBound + i), key: "media-host")
        }
        var relayConfig = RelayConfig()
        relayConfig.maxRoomsPerLoop = config.maxRoomsPerLoop
        relayConfig.maxParticipantsPerRoom = config.maxParticipantsPerRoom
        relayConfig.participantTimeout = .seconds(config.participantTimeoutSeconds)
        relayConfig.batchSize = config.udpBatch
        let relay = try Relay(loops: loops, mediaAddresses: mediaAddresses, config: relayConfig)
        for a in mediaAddresses { announce("media", a.description, log) }

        var stun: STUNService?
        if let s = config.stun {
            stun = try STUNService.start(on: loops[0], bindTo: try address(s, key: "stun"))
            announce("stun", stun!.localAddress.description, log)
        }

        // HTTP + WebSocket.
        let secret = try ServerSecret.loadOrCreate(dataDir: config.dataDir)
        let verifier = JWTVerifier(secret: secret)
        let router = HTTPRouter()
        BuiltinRoutes.install(on: router)
        let signalling = SignallingService(backend: RelayMediaBackend(relay: relay), verifier: verifier,
                                           graceSeconds: Double(config.reconnectGraceSeconds),
                                           maxParticipantsPerRoom: config.maxParticipantsPerRoom,
                                           logger: Logger(label: "signalling", level: config.logLevel))
        signalling.install(on: router)
        TranscodeRoutes.install(on: router, dataDir: config.dataDir)
        let tls = config.insecure ? nil : try tlsContext(config: config, log: log)
        let http = HTTPServer(group: group, router: router, tls: tls)
        let bound = try http.start(at: try address(config.listen, key: "listen"))
        announce(tls == nil ? "http" : "https", bound.description, log)
        return Parts(http: http, relay: relay, stun: stun)
    }

    /// The configured certificate, or a self-signed one in DATA-DIR/tls
    /// (generated on first start, reused after). Prints its SHA-256
    /// fingerprint so clients can pin it.
    static func tlsContext(config: ServerConfig, log: Logger) throws -> TLSContext {
        let cert: String, key: String
        if let c = config.tlsCert, let k = config.tlsKey {
            cert = c; key = k
        } else {
            let dir = config.dataDir + "/tls"
            cert = dir + "/cert.pem"; key = dir + "/key.pem"
            if !(FileManager.default.fileExists(atPath: cert) && FileManager.default.fileExists(atPath: key)) {
                _ = try TLSCertificate.generateSelfSigned(directory: dir)
                log.info("generated a self-signed certificate", ["file": .string(cert)])
            }
        }
        let fingerprint = try TLSCertificate.sha256Fingerprint(ofPEMFile: cert)
        print("tls certificate \(cert) sha256 \(fingerprint)")
        log.info("tls", ["certificate": .string(cert), "sha256": .string(fingerprint)])
        return try TLSContext.server(certificateChainFile: cert, privateKeyFile: key)
    }

    /// The readiness line scripts wait for (stdout), and the same as a log line.
    static func announce(_ what: String, _ address: String, _ log: Logger) {
        print("listening \(what) \(address)")
        fflush(nil)
        log.info("listening", ["what": .string(what), "address": .string(address)])
    }
}
