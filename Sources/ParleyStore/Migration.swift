/// One step of a database's schema history. A database's schema version
/// (`PRAGMA user_version`) is the number of steps applied to it; `migrate`
/// runs the missing ones in order. Steps are only ever appended: a step
/// that shipped is never changed.
public struct Migration: Sendable {
    /// What the step does, for errors and the log.
    public let name: String
    let apply: @Sendable (Database) throws -> Void

    public init(_ name: String, _ apply: @escaping @Sendable (Database) throws -> Void) {
        self.name = name
        self.apply = apply
    }
}

extension Database {
    /// Brings the schema up to `steps.count`: runs each step the database has
    /// not had yet, in order, and records the new version, all in one
    /// transaction (so another process migrating the same file at the same
    /// time waits, then finds nothing left to do). Returns how many steps ran.
    /// A database newer than `steps` is refused with `schemaTooNew`.
    @discardableResult
    public func migrate(_ steps: [Migration]) throws -> Int {
        let known = Int32(steps.count)
        // Most opens find the schema current: check without taking the write lock.
        if try userVersion == known { return 0 }
        return try transaction {
            let version = try userVersion
            guard version <= known else { throw StoreError.schemaTooNew(path: path, version: version, known: known) }
            for step in steps[Int(version)...] {
                do { try step.apply(self) } catch let error as StoreError {
                    guard case .sqlite(let code, let message, let context) = error else { throw error }
                    throw StoreError.sqlite(code: code, message: message, context: "migration \"\(step.name)\": \(context)")
                }
            }
            try execute("PRAGMA user_version = \(known)")
            return Int(known - version)
        }
    }
}
