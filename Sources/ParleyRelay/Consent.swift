import ParleyCore
import ParleyIO
import ParleySTUN

/// The transaction IDs of a participant's recent Binding requests: a request
/// whose ID is here is a retransmission or a replay (RFC 8489 §6.3.4), and
/// never moves the session. A fixed ring, filled in place (no allocation per
/// request); 16 IDs cover far more than a client's retransmissions of one
/// request and its checks of the last few seconds.
struct TransactionRing {
    static let capacity = 16
    private var ids = [STUNTransactionID](repeating: STUNTransactionID(0, 0, 0), count: capacity)
    private var next = 0

    /// Remembers `id`; false when it was already there.
    mutating func insert(_ id: STUNTransactionID) -> Bool {
        for i in 0..<Self.capacity where ids[i] == id { return false }
        ids[next] = id
        next = (next + 1) % Self.capacity
        return true
    }
}

/// A consent check in flight (RFC 7675 §5.1, RFC 8445 §7.2.2): the relay's
/// own Binding request to a new address for a participant. Media moves there
/// only when an authenticated success response with this transaction ID
/// comes back from that address.
struct ConsentCheck {
    let address: SocketAddress
    let transactionID: STUNTransactionID
    /// Requests sent so far (the first and its retransmissions).
    var attempts: Int
}
