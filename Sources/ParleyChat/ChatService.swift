import Foundation
import ParleyCore
import ParleyProtocol
import ParleySignalling
import ParleyStore

/// Chat's limits (config keys `chat-*`, docs/operations.md).
public struct ChatConfig: Sendable {
    /// Bytes of UTF-8 text one message may carry (`chat-max-message-bytes`).
    public var maxMessageBytes = 64 * 1024
    /// Messages per second one user may send, over all devices (`chat-rate`), and at once (`chat-burst`).
    public var ratePerSecond = 20
    public var burst = 100
    /// Devices of one user that get chat at once (`chat-max-devices`); more are refused `too_many_devices`.
    public var maxDevices = 8
    /// Messages per sync page: the device acks the page's last message before the next is sent (`chat-sync-page`).
    public var syncPage = 500
    /// Members one group may have, its creator included (`chat-max-group-members`).
    public var maxGroupMembers = 256
    /// Messages of a direct conversation the recipient has not had yet, at most (`chat-max-undelivered`).
    public var maxUndelivered = 100_000
    /// Messages one user has not had yet over all its conversations, groups included, at most (`chat-max-backlog`).
    public var maxBacklog = 100_000
    /// How long delivered messages are kept (`chat-retention`).
    public var retention = ChatStore.Retention.delivered
    /// Seconds between prunes of delivered messages (the first runs at start).
    public var pruneIntervalSeconds = 60.0
    /// Seconds a user must stay offline before contacts are told (`chat-presence-debounce-ms`): a flapping connection tells nobody.
    public var presenceDebounceSeconds = 2.0
    public init() {}
}

/// Chat: the feature that answers `chat.send`, `chat.ack`, `chat.read`,
/// `chat.sync`, `chat.history` and the `chat.group.*` requests
/// (ChatRequest), delivers messages and receipts to every connected device
/// of their users, and syncs a device from the store when it connects. A
/// group message is stored once and sent to every member's devices; a group
/// change (created, renamed, added, removed, left) is a message of the group.
///
/// Every message, ack and read goes through the `ChatStore`'s writer thread
/// (group commit); the answer and the deliveries happen when its completion
/// comes back to the signalling thread, so `sent` means committed, and the
/// signalling thread never touches the disk. Completions come back in commit
/// order, which is how a sync and live delivery fit together: while a
/// device syncs, live messages are not sent to it (the sync's page reads,
/// which run in that same order, include them), until a page comes back
/// short; from then on it gets them live.
///
/// Confined to the signalling thread, like the core it is registered with.
public final class ChatService: SignallingFeature {
    /// A connected device's chat state.
    final class Device {
        /// Over `maxDevices`: gets no chat.
        var refused = false
        var sync: Sync?
        /// Identifies the current sync, so a stale page completion is dropped.
        var syncs = 0
    }

    struct Sync {
        var id: Int
        var source: ChatStore.SyncSource
        /// Conversation → last seq sent in this sync.
        var sent: [Int64: Int64] = [:]
        /// The message whose ack lets the next page go.
        var waitingFor: (conversation: Int64, seq: Int64)?
        /// A page came back short: messages are live again, receipts are on their way.
        var messagesDone = false
        var messages = 0
    }

    public let store: ChatStore
    public let config: ChatConfig
    unowned let core: SignallingCore
    let metrics: ChatMetrics
    let log: Logger
    /// Told of a message whose recipient has no connected chat device (nil: nobody is).
    let notifier: ChatNotifier?

    private var devices: [SessionKey: Device] = [:]
    /// Each sending user's budget (`chat-rate`, `chat-burst`); dropped when the user's last device goes.
    private var budgets: [String: TokenBucket] = [:]
    /// Users whose contacts were last told "online".
    private var announcedOnline: Set<String> = []
    /// When each user's last device went (ms since the epoch), while its offline debounce runs.
    private var wentAt: [String: Int64] = [:]

    /// Creates the service and registers it with `core`. Call on the signalling thread.
    public init(core: SignallingCore, store: ChatStore, config: ChatConfig = ChatConfig(), metrics: ChatMetrics = .shared,
                notifier: ChatNotifier? = nil, logger: Logger = Logger(label: "parley.chat")) {
        self.core = core
        self.notifier = notifier
        self.store = store
        self.config = config
        self.metrics = metrics
        self.log = logger
        core.register(self)
        prune()
    }

    /// Deletes what `retention` no longer keeps, now and every `pruneIntervalSeconds`.
    private func prune() {
        let metrics = self.metrics, log = self.log
        try? store.prune(config.retention) { result in
            switch result {
            case .success(let n): metrics.pruned.inc(n)
            case .failure(let e): log.warn("chat prune failed", ["error": .string("\(e)")])
            }
        }
        core.scheduler.schedule(afterSeconds: config.pruneIntervalSeconds) { [weak self] in self?.prune() }
    }

    // MARK: SignallingFeature

    public var messageTypes: [String] { ChatRequest.types }

    public func authenticated(_ session: SignallingSession) -> [String: JSONValue] {
        let key = session.key
        let device = Device()
        devices[key] = device
        let connected = core.presence.devices(of: key.user).filter { devices[SessionKey(user: $0.user, device: $0.device)]?.refused == false }
        if connected.count > config.maxDevices {
            device.refused = true
            metrics.refusedTooManyDevices.inc()
            return ["chat": ["refused": "too_many_devices"]]
        }
        // Runs after this auth is answered: the page comes back through the writer.
        startSync(key, device, source: .stored)
        // Online is told at once; offline only after the debounce (so a reconnect within it tells nobody).
        if announcedOnline.insert(key.user).inserted { announce(key.user, online: true) }
        return [:]
    }

    public func sessionEnded(_ session: SignallingSession, reason: String) {
        devices[session.key] = nil
        let user = session.user
        guard core.presence.devices(of: user).isEmpty else { return }
        budgets[user] = nil
        let now = ChatStore.nowMilliseconds()
        try? store.lastSeen(user, at: now)  // a full queue loses one last-seen update, nothing else
        let first = wentAt.updateValue(now, forKey: user) == nil
        guard first else { return }  // a debounce is already running
        core.scheduler.schedule(afterSeconds: config.presenceDebounceSeconds) { [weak self] in
            guard let self, let at = wentAt.removeValue(forKey: user) else { return }
            guard !core.presence.isOnline(user), announcedOnline.remove(user) != nil else { return }
            announce(user, online: false, lastSeen: at)
        }
    }

    // MARK: Presence

    /// Tells `user`'s online contacts (users who share a conversation) that it came or went, unless its setting hides it.
    private func announce(_ user: String, online: Bool, lastSeen: Int64? = nil) {
        var event: [String: JSONValue] = ["type": "chat.presence", "user": .string(user), "online": .bool(online)]
        if let lastSeen { event["lastSeen"] = JSONValue(Int(lastSeen)) }
        let text = JSONValue.object(event).serialized
        try? store.contacts(of: user, completion: core.onSignallingThread { [self] result in
            guard case .success(let c) = result, c.visible else { return }
            for contact in c.contacts { metrics.presenceEvents.inc(sendToChatDevices(of: contact, text)) }
        })
    }

    /// Sends `text` to every connected chat device of `user` (but `except`); returns how many.
    @discardableResult
    private func sendToChatDevices(of user: String, _ text: String, except: SessionKey? = nil) -> Int {
        var n = 0
        for d in core.presence.devices(of: user) {
            let k = SessionKey(user: d.user, device: d.device)
            guard k != except, devices[k]?.refused == false else { continue }
            core.send(text: text, to: k)
            n += 1
        }
        return n
    }

    public func handle(_ request: ClientRequest, from session: SignallingSession, reply: SignallingReply) {
        let key = session.key
        guard let device = devices[key], !device.refused else {
            metrics.refusedTooManyDevices.inc()
            return reply.fail(SignallingError(.tooManyDevices, "\(session.user) has \(config.maxDevices) devices using chat already"))
        }
        let r: ChatRequest
        do { r = try ChatRequest(request, maxTextBytes: config.maxMessageBytes) } catch {
            if error.code == .tooLarge { metrics.refusedTooLarge.inc() }
            return reply.fail(error)
        }
        do {
            switch r {
            case .send(let to, let clientId, let text, let attachments):
                try send(to: to, clientId: clientId, text: text, attachments: attachments, from: key, reply: reply)
            case .createGroup(let name, let members):
                try takeBudget(key.user)
                try store.createGroup(creator: key.user, device: key.device, name: name, members: members,
                                      maxMembers: config.maxGroupMembers, completion: core.onSignallingThread { [self] result in
                    stored(result, from: key, reply: reply)
                })
            case .changeGroup(let conversation, let change):
                try takeBudget(key.user)
                try store.changeGroup(conversation, change, by: key.user, device: key.device, maxMembers: config.maxGroupMembers,
                                      completion: core.onSignallingThread { [self] result in stored(result, from: key, reply: reply) })
            case .presence(let users):
                try store.lastSeen(of: users, asker: key.user, completion: core.onSignallingThread { [self] result in
                    switch result {
                    case .success(let rows):
                        reply.ok(["users": .array(rows.map { r in
                            guard r.visible else { return ["user": .string(r.user), "hidden": true] }
                            var o: [String: JSONValue] = ["user": .string(r.user), "online": .bool(core.presence.isOnline(r.user))]
                            if let t = r.lastSeen { o["lastSeen"] = JSONValue(Int(t)) }
                            return .object(o)
                        })])
                    case .failure(let e): reply.fail(refusal(e))
                    }
                })
            case .privacy(let visibility):
                try store.setPrivacy(key.user, lastSeen: visibility, completion: core.onSignallingThread { [self] result in
                    switch result {
                    case .success: reply.ok(["lastSeen": .string(visibility.rawValue)])
                    case .failure(let e): reply.fail(refusal(e))
                    }
                })
            case .typing(let conversation, let typing):
                try store.members(of: conversation, user: key.user, completion: core.onSignallingThread { [self] result in
                    switch result {
                    case .success(let members):
                        reply.ok()
                        let text = JSONValue.object(["type": "chat.typing", "conversation": JSONValue(Int(conversation)),
                                                     "user": .string(key.user), "typing": .bool(typing)]).serialized
                        for m in members where m != key.user { metrics.typingEvents.inc(sendToChatDevices(of: m, text)) }
                    case .failure(let e): reply.fail(refusal(e))
                    }
                })
            case .members(let conversation):
                try store.members(of: conversation, for: key.user, completion: core.onSignallingThread { [self] result in
                    switch result {
                    case .success(let g):
                        reply.ok(["conversation": JSONValue(Int(conversation)), "name": .string(g.name), "lastSeq": JSONValue(Int(g.last)),
                                  "members": .array(g.members.map { m in
                                      ["user": .string(m.user), "admin": .bool(m.admin), "delivered": JSONValue(Int(m.delivered)),
                                       "read": JSONValue(Int(m.read))]
                                  })])
                    case .failure(let e): reply.fail(refusal(e))
                    }
                })
            case .ack(let acks, let receipt):
                try store.ack(user: key.user, device: key.device, acks: acks, receipt: receipt,
                              completion: core.onSignallingThread { [self] result in
                    switch result {
                    case .success(let marks):
                        reply.ok()
                        for m in marks { tell(m) }
                        for a in acks { continueSync(key, device, acked: (a.conversation, a.seq)) }
                    case .failure(let e):
                        reply.fail(refusal(e))
                    }
                })
            case .read(let conversation, let seq):
                try store.read(user: key.user, conversation: conversation, seq: seq,
                               completion: core.onSignallingThread { [self] result in marked(result, by: key, reply: reply) })
            case .sync(let cursors):
                reply.ok()
                startSync(key, device, source: cursors.map { .cursors($0) } ?? .stored)
            case .history(let conversation, let before, let limit):
                try store.history(user: key.user, conversation: conversation, before: before, limit: limit,
                                  completion: core.onSignallingThread { [self] result in
                    switch result {
                    case .success(let messages): reply.ok(["conversation": JSONValue(Int(conversation)),
                                                           "messages": .array(messages.map(\.json))])
                    case .failure(let e): reply.fail(refusal(e))
                    }
                })
            }
        } catch {
            reply.fail(refusal(error))
        }
    }

    // MARK: Send

    private func send(to: ChatTarget, clientId: String, text: String, attachments: [String], from key: SessionKey,
                      reply: SignallingReply) throws {
        guard to != .user(key.user) else { throw SignallingError(.badRequest, "\"to\" must name another user") }
        try takeBudget(key.user)
        try store.send(from: key.user, device: key.device, to: to, clientId: clientId, text: text, attachments: attachments,
                       maxUndelivered: config.maxUndelivered, maxBacklog: config.maxBacklog,
                       completion: core.onSignallingThread { [self] result in stored(result, from: key, reply: reply) })
    }

    /// Takes one message from `user`'s budget, or throws `rate_limited`.
    private func takeBudget(_ user: String) throws(SignallingError) {
        let now = DispatchTime.now().uptimeNanoseconds
        var budget = budgets[user] ?? TokenBucket(rate: Double(config.ratePerSecond), burst: Double(config.burst), now: now)
        defer { budgets[user] = budget }
        guard budget.take(now: now) else {
            metrics.refusedRateLimited.inc()
            let ms = max(1, Int((budget.nanosecondsUntilAvailable(now: now) + 999_999) / 1_000_000))
            throw SignallingError(.rateLimited, "more than \(config.ratePerSecond) messages per second (burst \(config.burst)); retry after \(ms) ms",
                                  retryAfterMilliseconds: ms)
        }
    }

    /// Answers a send or a group change once committed, and delivers what it stored.
    private func stored(_ result: Result<ChatStore.Sent, Error>, from key: SessionKey, reply: SignallingReply) {
        switch result {
        case .success(let sent):
            let m = sent.message
            if sent.duplicate { metrics.duplicates.inc() } else { metrics.messages.inc() }
            reply.ok(text: m.sentReply(reply, duplicate: sent.duplicate))
            if !sent.duplicate {
                deliver(m, to: sent.members, except: key)
                notifyOffline(m, to: sent.members, except: key.user)
            }
        case .failure(let e):
            reply.fail(refusal(e))
        }
    }

    /// Sends `message` to every connected device of `users` but `except`
    /// (the sending device), and not to devices in the middle of a sync.
    private func deliver(_ message: StoredMessage, to users: [String], except: SessionKey) {
        let text = message.eventText()
        for user in users {
            for d in core.presence.devices(of: user) {
                let key = SessionKey(user: d.user, device: d.device)
                guard key != except, let device = devices[key], !device.refused, device.sync?.messagesDone ?? true else { continue }
                core.send(text: text, to: key)
                metrics.deliveredLive.inc()
            }
        }
    }

    /// Tells the notifier of a text message to each user but `except` with no
    /// connected chat device (a device in the middle of a sync counts as connected).
    private func notifyOffline(_ message: StoredMessage, to users: [String], except: String) {
        guard let notifier, message.kind == .text else { return }
        for user in users where user != except {
            let connected = core.presence.devices(of: user).contains { devices[SessionKey(user: $0.user, device: $0.device)]?.refused == false }
            if !connected {
                notifier.notify(ChatNotification(user: user, conversation: message.conversation, sender: message.sender,
                                                 group: message.to == nil, text: notifier.includesText ? message.body : nil))
            }
        }
    }

    /// Answers a read, and tells the conversation's other users of a moved mark.
    private func marked(_ result: Result<ChatStore.Marked, Error>, by key: SessionKey, reply: SignallingReply) {
        switch result {
        case .success(let m):
            reply.ok()
            tell(m)
        case .failure(let e):
            reply.fail(refusal(e))
        }
    }

    /// Tells the conversation's other users of a moved mark (`chat.receipt`).
    private func tell(_ m: ChatStore.Marked) {
        guard let receipt = m.receipt else { return }
        (receipt.status == .delivered ? metrics.receiptsDelivered : metrics.receiptsRead).inc()
        var plain: String?
        for notice in m.notify {
            // A group's: "delivered to 48 of 49", how far the told member's own latest message got.
            let text = notice.summary.map { receipt.eventText(summary: $0) } ?? plain ?? receipt.eventText()
            if notice.summary == nil { plain = text }
            sendToChatDevices(of: notice.user, text)
        }
    }

    // MARK: Sync

    private func startSync(_ key: SessionKey, _ device: Device, source: ChatStore.SyncSource) {
        device.syncs += 1
        device.sync = Sync(id: device.syncs, source: source)
        metrics.syncs.inc()
        nextPage(key, device)
    }

    /// An ack arrived: if it covers the last message of the page sent, the next page goes.
    private func continueSync(_ key: SessionKey, _ device: Device, acked: (conversation: Int64, seq: Int64)) {
        guard devices[key] === device, let w = device.sync?.waitingFor,
              w.conversation == acked.conversation, acked.seq >= w.seq else { return }
        device.sync?.waitingFor = nil
        nextPage(key, device)
    }

    private func nextPage(_ key: SessionKey, _ device: Device) {
        guard let sync = device.sync else { return }
        let id = sync.id, limit = config.syncPage
        do {
            try store.syncPage(user: key.user, device: key.device, source: sync.source, sent: sync.sent, limit: limit,
                               completion: core.onSignallingThread { [self] result in
                guard devices[key] === device, device.sync?.id == id else { return } // replaced or gone
                switch result {
                case .success(let page):
                    for (i, m) in page.enumerated() {
                        let last = i == page.count - 1 && page.count == limit
                        core.send(text: m.eventText(ackRequested: last), to: key)
                        device.sync?.sent[m.conversation] = m.seq
                    }
                    metrics.deliveredSync.inc(page.count)
                    device.sync?.messages += page.count
                    if page.count == limit, let m = page.last {
                        device.sync?.waitingFor = (m.conversation, m.seq)
                    } else {
                        device.sync?.messagesDone = true
                        finishSync(key, device)
                    }
                case .failure(let e):
                    failSync(key, device, e)
                }
            })
        } catch {
            failSync(key, device, error)
        }
    }

    /// Messages are done: the receipts the device missed, then `sync.done`.
    private func finishSync(_ key: SessionKey, _ device: Device) {
        guard let id = device.sync?.id else { return }
        do {
            try store.pendingReceipts(user: key.user, device: key.device, completion: core.onSignallingThread { [self] result in
                guard devices[key] === device, let sync = device.sync, sync.id == id else { return }
                switch result {
                case .success(let receipts):
                    for r in receipts { core.send(text: r.eventText(), to: key) }
                    device.sync = nil
                    core.send(text: JSONValue.object(["type": "sync.done", "messages": JSONValue(sync.messages),
                                                      "receipts": JSONValue(receipts.count)]).serialized, to: key)
                case .failure(let e):
                    failSync(key, device, e)
                }
            })
        } catch {
            failSync(key, device, error)
        }
    }

    /// A sync that could not go on: the device is told (`sync.done` with an
    /// `error`) and gets messages live again; it may `chat.sync` later.
    private func failSync(_ key: SessionKey, _ device: Device, _ error: Error) {
        guard let sync = device.sync else { return }
        device.sync = nil
        log.warn("chat sync failed", ["user": .string(key.user), "device": .string(key.device), "error": .string("\(error)")])
        let e = refusal(error)
        core.send(text: JSONValue.object(["type": "sync.done", "messages": JSONValue(sync.messages), "receipts": 0,
                                          "error": .string(e.code.rawValue),
                                          "retryAfter": e.retryAfterMilliseconds.map { JSONValue($0) } ?? .null]).serialized, to: key)
    }

    // MARK: Errors

    /// The protocol error for what the store or the request threw.
    private func refusal(_ error: Error) -> SignallingError {
        switch error {
        case let e as SignallingError: return e
        case ChatRefusal.notMember(let c):
            metrics.refusedNotMember.inc()
            return SignallingError(.notMember, "not a member of conversation \(c)")
        case ChatRefusal.notAdmin(let c): return SignallingError(.forbidden, "only an administrator of group \(c) may do that")
        case ChatRefusal.notAGroup(let c): return SignallingError(.badRequest, "conversation \(c) is not a group")
        case ChatRefusal.backlogFull(let n):
            metrics.refusedBacklogFull.inc()
            return SignallingError(.backlogFull, "the recipient has \(n) undelivered messages in this conversation; try again once it has caught up")
        case ChatRefusal.userBacklogFull(let user, let n):
            metrics.refusedBacklogFull.inc()
            return SignallingError(.backlogFull, "\(user) has \(n) undelivered messages over all its conversations; try again once it has caught up")
        case ChatRefusal.unknownMedia(let id): return SignallingError(.badRequest, "no attachment \(id) that you may send (upload it with PUT /media)")
        case ChatRefusal.groupFull(let n):
            metrics.refusedGroupFull.inc()
            return SignallingError(.groupFull, "a group has at most \(n) members")
        case StoreError.queueFull(let n):
            metrics.refusedBusy.inc()
            return SignallingError(.busy, "the chat store has \(n) writes waiting; retry after 100 ms", retryAfterMilliseconds: 100)
        default:
            log.error("chat store failed", ["error": .string("\(error)")])
            return SignallingError(.internalError, "the chat store failed; nothing was changed")
        }
    }
}
