/// Who is online: which users have connected devices, over which
/// connections, on which signalling node. The signalling core keeps it up to
/// date (a device is online from its `auth` until its connection closes or
/// another connection of the same device takes over); features ask it what
/// chat needs: "every connected device of user X", "who of these users is
/// online".
///
/// Confined to the signalling thread, and answered synchronously: a
/// several-node implementation keeps a local replica of the other nodes'
/// entries (fed by their announcements, as Phoenix.Presence does), so a
/// lookup never waits for the network.
public protocol PresenceDirectory: AnyObject {
    /// The name of this signalling node, for the entries it adds.
    var node: String { get }
    /// A device came online on `presence.connection` (replacing any entry of the same device).
    func connected(_ presence: DevicePresence)
    /// The connection is gone; the device is offline unless another connection took it over.
    func disconnected(user: String, device: String, connection: SignallingCore.ConnectionID)
    /// Every online device of `user` (empty when offline), in device order.
    func devices(of user: String) -> [DevicePresence]
    /// The online users among `users`.
    func online(among users: some Sequence<String>) -> Set<String>
}

extension PresenceDirectory {
    public func isOnline(_ user: String) -> Bool { !devices(of: user).isEmpty }
}

/// One online device.
public struct DevicePresence: Sendable, Hashable {
    public var user: String
    public var device: String
    /// The connection on `node` that carries it.
    public var connection: SignallingCore.ConnectionID
    /// The signalling node it is connected to (one node today: `LocalPresenceDirectory.node`).
    public var node: String

    public init(user: String, device: String, connection: SignallingCore.ConnectionID, node: String) {
        self.user = user
        self.device = device
        self.connection = connection
        self.node = node
    }
}

/// The presence of this process's connections (one signalling node).
public final class LocalPresenceDirectory: PresenceDirectory {
    /// The name of this node in `DevicePresence.node`.
    public let node: String
    /// user → its online devices, sorted by device name (a user has a few:
    /// a small array beats a dictionary, and `devices(of:)` hands it out as
    /// it is, without sorting or copying).
    private var users: [String: [DevicePresence]] = [:]

    public init(node: String = "local") { self.node = node }

    public func connected(_ presence: DevicePresence) {
        var list = users.removeValue(forKey: presence.user) ?? []
        if let i = list.firstIndex(where: { $0.device == presence.device }) {
            list[i] = presence
        } else {
            list.insert(presence, at: list.firstIndex { $0.device > presence.device } ?? list.endIndex)
        }
        users[presence.user] = list
    }

    public func disconnected(user: String, device: String, connection: SignallingCore.ConnectionID) {
        guard var list = users[user], let i = list.firstIndex(where: { $0.device == device }),
              list[i].connection == connection else { return } // taken over: the new entry stays
        users[user] = nil
        list.remove(at: i)
        if !list.isEmpty { users[user] = list }
    }

    public func devices(of user: String) -> [DevicePresence] {
        users[user] ?? []
    }

    public func online(among users: some Sequence<String>) -> Set<String> {
        Set(users.filter { self.users[$0] != nil })
    }

    /// Online users (for tests and the admin view).
    public var onlineCount: Int { users.count }
}
