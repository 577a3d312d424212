import ParleyAuth
import ParleyChat
import ParleySignalling
import ParleyWeb
import Foundation
import Synchronization
import ParleyCore
import ParleyHTTP
import ParleyIO
import ParleyRelay

/// The daemon's TCP front end: one HTTP/WebSocket listener (TLS unless
/// `insecure`) with `/healthz`, `/metrics`, `/ws` signalling wired to the
/// relay, and the admin API. The daemon adds its own routes to `router`
/// (`/hls/…`, `POST /jobs`) before or after `start`.
///
/// ```swift
/// let sink = RelayEventSink()
/// var rc = RelayConfig(); rc.onEvent = sink.deliver
/// let relay = try Relay(loops: group.loops, mediaAddresses: …, config: rc)
/// let front = try ServerFrontEnd.start(group: group, config: config, relay: relay, events: sink)
/// front.readyLines.forEach { print($0) }
/// ```
public final class ServerFrontEnd: Sendable {
    public let router: HTTPRouter
    public let http: HTTPServer
    /// nil when started without a relay (HTTP only).
    public let signalling: SignallingService?
    public let backend: RelayMediaBackend?
    /// The chat store (DATA-DIR/chat.db) behind the chat feature; nil without signalling.
    public let chat: ChatStore?
    /// The offline notifier (`chat-webhook-url`); nil without one.
    public let notifier: WebhookNotifier?
    /// The bound listener address (real port when `listen` had port 0).
    public let address: SocketAddress
    /// `https` or `http`.
    public let scheme: String
    /// Lines to print on stdout once ready (`listening https 127.0.0.1:7700`, the certificate fingerprint).
    public let readyLines: [String]

    private init(router: HTTPRouter, http: HTTPServer, signalling: SignallingService?, backend: RelayMediaBackend?,
                 chat: ChatStore?, notifier: WebhookNotifier?, address: SocketAddress, scheme: String, readyLines: [String]) {
        self.chat = chat
        self.notifier = notifier
        self.router = router
        self.http = http
        self.signalling = signalling
        self.backend = backend
        self.address = address
        self.scheme = scheme
        self.readyLines = readyLines
    }

    /// Binds the listener and starts serving. Call from a thread that is not
    /// one of `group`'s loops.
    /// - Parameters:
    ///   - relay: the media relay; nil serves HTTP only (no `/ws`).
    ///   - events: where the relay's `onEvent` was pointed (participant timeouts end signalling sessions).
    ///   - recording: the recorder on the relay's tap (start/stop over signalling and the admin API,
    ///     `record-rooms`); nil records nothing.
    public static func start(group: EventLoopGroup, config: ServerConfig, relay: Relay?, events: RelayEventSink? = nil,
                             recording: RoomRecorder? = nil, router: HTTPRouter = HTTPRouter(),
                             logger: Logger = Logger(label: "parley.http")) throws -> ServerFrontEnd {
        let listen = try config.listen.socketAddress(key: "listen")
        var lines: [String] = []
        let tls: TLSContext?
        if config.insecure {
            guard ServerConfig.isLoopback(config.listen.host) else {
                throw StartError("plain ws:// is only allowed on a loopback address, not \(config.listen.host)")
            }
            tls = nil
        } else {
            let (ctx, info) = try ServerTLS.context(config: config)
            tls = ctx
            lines += info
        }
        let secret: [UInt8]
        do { secret = try ServerSecret.loadOrCreate(dataDir: config.dataDir) } catch {
            throw StartError("token secret: \(error)")
        }
        BuiltinRoutes.install(on: router, access: config.metricsAccess, secret: secret)
        if relay != nil {
            guard !config.dev || ServerConfig.isLoopback(config.listen.host) else {
                throw StartError("dev tokens are only handed out on a loopback listener, not \(config.listen.host)")
            }
            DemoRoutes.install(on: router, dev: config.dev, secret: secret)
        }
        var signalling: SignallingService?
        var backend: RelayMediaBackend?
        var chat: ChatStore?
        var chatNotifier: WebhookNotifier?
        if let relay {
            let b = RelayMediaBackend(relay: relay,
                                      advertisedHost: config.mediaAnnounce ?? (ServerConfig.isWildcard(config.mediaHost) ? nil : config.mediaHost),
                                      webrtcTransports: config.webrtcCandidates,
                                      otherHosts: config.mediaAnnounceOther.map { [$0] } ?? [])
            let s = try SignallingService(backend: b, verifier: JWTVerifier(secret: secret),
                                      graceSeconds: Double(config.reconnectGraceSeconds),
                                      maxParticipantsPerRoom: config.maxParticipantsPerRoom,
                                      requestRate: config.signallingRate, requestBurst: config.signallingBurst,
                                      recording: recording, autoRecord: config.recordRooms,
                                      logger: Logger(label: "parley.signalling", level: config.logLevel))
            s.install(on: router)
            events?.connect(signalling: s)
            if let recording {
                recording.connect(signalling: s)
                RecordingRoutes.install(on: router, directory: recording.recorder.directory, auth: BearerAuth(secret: secret),
                                        pool: recording.pool)
            }
            let store: ChatStore
            do {
                store = try ChatStore(path: config.dataDir + "/chat.db", synchronous: config.chatDurability == "fsync" ? .full : .normal,
                                      queueCapacity: config.chatQueue, commitDelay: .milliseconds(config.chatCommitDelayMs))
            } catch {
                s.shutdown()
                throw StartError("chat store \(config.dataDir)/chat.db: \(error)")
            }
            let chatConfig = config.chatConfig, level = config.logLevel
            let notifier: WebhookNotifier?
            _ = NotifierMetrics.shared  // on /metrics from the start
            do {
                notifier = try config.chatWebhook().map { try WebhookNotifier(config: $0, logger: Logger(label: "parley.chat.notify", level: level)) }
            } catch {
                s.shutdown()
                store.close()
                throw StartError("chat webhook: \(error)")
            }
            try s.addFeature { core in
                _ = ChatService(core: core, store: store, config: chatConfig, notifier: notifier,
                                logger: Logger(label: "parley.chat", level: level))
            }
            chat = store
            chatNotifier = notifier
            ChatAdminRoutes.install(on: router, chat: store, notifier: notifier, auth: BearerAuth(secret: secret))
            signalling = s
            backend = b
        }
        let http = HTTPServer(group: group, router: router, tls: tls, limits: config.httpLimits, logger: logger)
        let bound: SocketAddress
        do { bound = try http.start(at: listen) } catch let e as SystemError {
            signalling?.shutdown()
            chat?.close()
            chatNotifier?.close()
            throw StartError(what: tls == nil ? "http" : "https", address: listen, reason: e.message)
        }
        let scheme = tls == nil ? "http" : "https"
        lines.append("listening \(scheme) \(bound)")
        if signalling != nil { lines.append("listening \(tls == nil ? "ws" : "wss") \(bound)/ws") }
        return ServerFrontEnd(router: router, http: http, signalling: signalling, backend: backend, chat: chat, notifier: chatNotifier, address: bound,
                              scheme: scheme, readyLines: lines)
    }

    /// Stops accepting connections, the signalling thread, and the chat store's writer (after what it has queued).
    public func stop() {
        http.stop()
        signalling?.shutdown()
        chat?.close()
        notifier?.close()
    }
}

/// Why the daemon (or its front end) could not start: one line for stderr.
public struct StartError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }

    /// `"<what> <address>: address already in use"` for a listener that cannot bind.
    init(what: String, address: CustomStringConvertible, reason: String) {
        description = "\(what) \(address): \(reason.prefix(1).lowercased() + reason.dropFirst())"
    }

    /// The same from the relay's error (media and STUN sockets).
    init(bindFailure error: RelayError, what: String) {
        if case .bindFailed(let address, let reason) = error {
            self.init(what: what, address: address, reason: reason)
        } else {
            self.init("\(what): \(error)")
        }
    }
}

extension ServerConfig {
    /// Chat's limits from the `chat-*` keys.
    var chatConfig: ChatConfig {
        var c = ChatConfig()
        c.maxMessageBytes = chatMaxMessageBytes
        c.ratePerSecond = chatRate
        c.burst = chatBurst
        c.maxDevices = chatMaxDevices
        c.syncPage = chatSyncPage
        c.maxGroupMembers = chatMaxGroupMembers
        c.maxUndelivered = chatMaxUndelivered
        c.maxBacklog = chatMaxBacklog
        c.presenceDebounceSeconds = Double(chatPresenceDebounceMs) / 1000
        c.retention = switch chatRetention {
        case "delivered": .delivered
        case "forever": .forever
        default: .days(Int(chatRetention) ?? 1)
        }
        return c
    }

    /// The webhook notifier's settings, nil without `chat-webhook-url`; reads the secret file.
    func chatWebhook() throws -> WebhookConfig? {
        guard !chatWebhookURL.isEmpty else { return nil }
        var secret = chatWebhookSecret
        if !chatWebhookSecretFile.isEmpty {
            guard let data = FileManager.default.contents(atPath: chatWebhookSecretFile) else {
                throw ConfigError(key: "chat-webhook-secret-file", "cannot read \(chatWebhookSecretFile)")
            }
            secret = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        }
        guard secret.utf8.count >= 16 else {
            throw ConfigError(key: chatWebhookSecretFile.isEmpty ? "chat-webhook-secret" : "chat-webhook-secret-file",
                              "the webhook's signing key must have at least 16 bytes")
        }
        var w = WebhookConfig(url: try WebhookURL(chatWebhookURL), secret: Array(secret.utf8))
        w.intervalSeconds = Double(chatWebhookIntervalMs) / 1000
        w.queueCapacity = chatWebhookQueue
        w.concurrency = chatWebhookConcurrency
        w.timeoutSeconds = Double(chatWebhookTimeoutMs) / 1000
        w.idleSeconds = Double(chatWebhookIdleMs) / 1000
        w.resolveTTLSeconds = Double(chatWebhookResolveTTLMs) / 1000
        w.attempts = chatWebhookAttempts
        w.backoffSeconds = Double(chatWebhookBackoffMs) / 1000
        w.includeText = chatWebhookIncludeText
        w.caFile = chatWebhookCAFile
        return w
    }

    /// The front end's limits from the config keys.
    var httpLimits: HTTPServer.Limits {
        var l = HTTPServer.Limits()
        l.tlsHandshakeTimeout = .seconds(tlsHandshakeTimeoutSeconds)
        l.requestHeadTimeout = .seconds(requestHeadTimeoutSeconds)
        l.maxQueuedBytes = maxQueuedBytes
        l.maxConnections = maxConnections
        l.maxConnectionsPerIP = maxConnectionsPerIP
        return l
    }
}
