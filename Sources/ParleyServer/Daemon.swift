import ParleyAuth
import ParleyChat
import ParleySignalling
import ParleyWeb
import Foundation
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyRecord
import ParleyRelay
import ParleyTranscode

/// Wires the daemon's parts together and runs until SIGINT/SIGTERM:
/// one event loop per core, a media UDP socket per loop (the relay), the
/// plain STUN service, and the HTTP/WebSocket listener (signalling, admin,
/// metrics, HLS files, transcoding jobs). `parley serve` runs it.
public enum Daemon {
    /// Starts everything, prints the readiness lines once all of it is up,
    /// and runs until SIGINT/SIGTERM. A daemon that cannot start (a busy
    /// port, a locked data dir) prints one line on stderr and returns 1
    /// without having printed any `listening` line; whatever it had bound
    /// closes with the loops.
    public static func run(config: ServerConfig) -> Int32 {
        let log = Logger(label: "serve", level: config.logLevel)
        let group: EventLoopGroup
        let parts: Parts
        do {
            try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
            let lock = try DirectoryLock(directory: config.dataDir, name: "serve.lock", what: "server")
            let loops = config.loops == 0 ? EventLoopGroup.coreCount : config.loops
            group = try EventLoopGroup(numberOfThreads: loops, shutdownSignals: [SIGINT, SIGTERM])
            do {
                parts = try start(config: config, group: group, lock: lock)
            } catch {
                group.syncShutdownGracefully()
                throw error
            }
        } catch {
            printError("parley serve: \(error)")
            return ExitCode.failure
        }
        announce(parts.readyLines, log)
        // SIGINT/SIGTERM shut the loops down gracefully: every socket and
        // connection on them (media, STUN, listener, sessions) is told,
        // pending writes are flushed, fds closed. Nothing is left to stop after.
        let signal = withExtendedLifetime(parts) { group.waitForShutdownSignal() }
        // Work the routes handed to the pool finishes (its answers have no loop left to go to).
        parts.pool.shutdown()
        parts.recording.shutdown()  // finishes the files of running recordings; exports not done become worker jobs
        parts.chat?.close()        // commits what chat had queued
        parts.notifier?.close()    // offline notifications still waiting are dropped
        log.info("stopped", ["signal": .int(Int(signal ?? 0))])
        return ExitCode.ok
    }

    /// What `start` brought up; kept alive until the loops have stopped.
    struct Parts {
        var http: HTTPServer
        var relay: Relay
        var stun: STUNService?
        /// The routes' SQLite and disk work (`blocking-threads`).
        var pool: BlockingPool
        var lock: DirectoryLock
        /// Records rooms into DATA-DIR/recordings from the relay's tap, and prunes it.
        var recording: RoomRecorder
        /// DATA-DIR/chat.db's writer.
        var chat: ChatStore?
        /// The offline notifier's thread (`chat-webhook-url`).
        var notifier: WebhookNotifier?
        /// `listening <what> <address>` (and the certificate line), printed once all is up.
        var readyLines: [String]
    }

    static func start(config: ServerConfig, group: EventLoopGroup, lock: DirectoryLock) throws -> Parts {
        // Media: one UDP port per loop, from the front of the range.
        let loops = group.loops
        guard config.mediaPorts.count >= loops.count else {
            throw StartError("media-ports \(config.mediaPorts.lowerBound)-\(config.mediaPorts.upperBound) has fewer ports than the \(loops.count) event loops")
        }
        let mediaAddresses = try loops.indices.map { i in
            try HostPort(host: config.mediaHost, port: config.mediaPorts.lowerBound + i).socketAddress(key: "media-host")
        }
        var tcpAddresses: [SocketAddress]?
        if let tcp = config.mediaTCPPorts {
            guard tcp.count >= loops.count else {
                throw StartError("media-tcp-ports \(tcp.lowerBound)-\(tcp.upperBound) has fewer ports than the \(loops.count) event loops")
            }
            tcpAddresses = try loops.indices.map { i in
                try HostPort(host: config.mediaHost, port: tcp.lowerBound + i).socketAddress(key: "media-host")
            }
        }
        var relayConfig = RelayConfig()
        relayConfig.tcp.maxConnections = config.mediaTCPMaxConnections
        relayConfig.tcp.maxConnectionsPerIP = config.mediaTCPMaxConnectionsPerIP
        relayConfig.tcp.writeBufferBytes = config.mediaTCPWriteBuffer
        relayConfig.tcp.idleTimeout = .seconds(config.mediaTCPIdleTimeoutSeconds)
        relayConfig.tcp.maxFrameBytes = config.mediaTCPMaxFrame
        relayConfig.maxRoomsPerLoop = config.maxRoomsPerLoop
        relayConfig.maxParticipantsPerRoom = config.maxParticipantsPerRoom
        relayConfig.participantTimeout = .seconds(config.participantTimeoutSeconds)
        relayConfig.announcedHost = config.mediaAnnounce
        relayConfig.dtlsHandshakeTimeout = .seconds(config.dtlsHandshakeTimeoutSeconds)
        relayConfig.consentFreshnessTimeout = .seconds(config.webrtcConsentTimeoutSeconds)
        relayConfig.rembBitrate = UInt64(config.rembBitrate)
        relayConfig.transportFeedbackInterval = .milliseconds(config.transportFeedbackIntervalMs)
        relayConfig.consentRetransmitInterval = .milliseconds(config.consentIntervalMilliseconds)
        relayConfig.consentMaxAttempts = config.consentAttempts
        relayConfig.srtpLatching = config.srtpLatching
        relayConfig.batchSize = config.udpBatch
        relayConfig.retransmissionResendInterval = .milliseconds(config.nackResendIntervalMs)
        relayConfig.retransmissionBudgetPercent = config.nackBudgetPercent
        let stunLimit = config.stunRate == 0 ? nil : STUNRateLimit(rate: config.stunRate, burst: config.stunBurst, sources: config.stunSources)
        relayConfig.stunRateLimit = stunLimit
        let events = RelayEventSink() // relay timeouts end signalling sessions
        relayConfig.onEvent = events.deliver
        let relay: Relay
        do { relay = try Relay(loops: loops, mediaAddresses: mediaAddresses, tcpAddresses: tcpAddresses, config: relayConfig) } catch {
            throw StartError(bindFailure: error, what: "media")
        }
        var lines = relay.workers.map { "listening media \($0.localAddress)" }
        lines += relay.workers.compactMap { $0.tcpLocalAddress.map { "listening media-tcp \($0)" } }

        var stun: STUNService?
        if let s = config.stun {
            let address = try s.socketAddress(key: "stun")
            do { stun = try STUNService.start(on: loops[0], bindTo: address, rateLimit: stunLimit) } catch {
                throw StartError(bindFailure: error, what: "stun")
            }
            lines.append("listening stun \(stun!.localAddress)")
        }

        // HTTPS/WSS (or plain with --insecure): signalling, admin, metrics, HLS, jobs.
        let router = HTTPRouter()
        let pool = BlockingPool(threads: config.blockingThreads)
        do {
            try TranscodeRoutes.install(on: router, config: config, pool: pool)
            let recording = RoomRecorder(directory: config.dataDir + "/recordings", limits: config.recordingLimits,
                                         maxRunning: config.recordMaxRunning, export: config.recordExport,
                                         exportOptions: config.exportOptions,
                                         jobs: try SQLiteJobQueue.open(dataDir: config.dataDir), relay: relay,
                                         pool: pool, loop: loops[0], logger: Logger(label: "record", level: config.logLevel))
            let front: ServerFrontEnd
            do {
                front = try ServerFrontEnd.start(group: group, config: config, relay: relay, events: events, recording: recording,
                                                 router: router, logger: Logger(label: "http", level: config.logLevel))
            } catch {
                recording.shutdown()
                throw error
            }
            if let chat = front.chat { try ChatMediaRoutes.install(on: router, config: config, pool: pool, chat: chat) }
            return Parts(http: front.http, relay: relay, stun: stun, pool: pool, lock: lock, recording: recording, chat: front.chat,
                         notifier: front.notifier, readyLines: lines + front.readyLines)
        } catch {
            pool.shutdown()
            throw error
        }
    }

    /// The readiness lines scripts wait for (stdout), each also a log line.
    static func announce(_ lines: [String], _ log: Logger) {
        for line in lines {
            print(line)
            let words = line.split(separator: " ")
            if words.count == 3, words[0] == "listening" {
                log.info("listening", ["what": .string(String(words[1])), "address": .string(String(words[2]))])
            } else {
                log.info(line)
            }
        }
        fflush(nil)
    }
}
