import Foundation
import ParleyStore

/// A job as the queue records it: a transcode, or a recording's export.
public struct Job: Sendable, Codable {
    public enum State: String, Sendable, Codable { case queued, running, done, failed }
    /// What the worker does with it.
    public enum Kind: String, Sendable, Codable {
        /// `input` (a path) into an HLS ladder.
        case transcode
        /// `input` is a recording id (never a path): the worker exports
        /// DATA-DIR/recordings/ID in place (ParleyRecord's `Exporter`).
        case recordExport = "record-export"
    }
    public var id: Int64
    public var kind: Kind = .transcode
    public var input: String
    public var options: TranscodeOptions
    /// Where the finished ladder is (set when done, or chosen at enqueue).
    public var output: String?
    public var state: State
    /// 0...1 while running.
    public var progress: Double
    public var attempts: Int
    public var maxAttempts: Int
    public var error: String?
    /// Unix seconds.
    public var created: Double
    public var updated: Double
    /// Not claimed before this time (retry backoff).
    public var notBefore: Double
    /// Set for jobs submitted over HTTP (`POST /jobs`); nil for the command
    /// line and the spool.
    public var submission: Submission?

    /// Who submitted a job over HTTP and how they named it: what the job API
    /// shows instead of server paths.
    public struct Submission: Sendable, Codable, Equatable {
        /// The token subject that submitted it.
        public var owner: String
        /// The input as the client named it: `upload:SHA256` or `input:RELATIVE-NAME`.
        public var source: String
        /// The ladder's directory name under DATA-DIR/hls (chosen by the server).
        public var asset: String
        /// Served without a token; nil: the server's `hls-public-default`.
        public var isPublic: Bool?

        public init(owner: String, source: String, asset: String, isPublic: Bool?) {
            self.owner = owner
            self.source = source
            self.asset = asset
            self.isPublic = isPublic
        }
    }
}

/// The transcoding job queue, and who owns which upload (`PUT /uploads`):
/// what the worker, `parley transcode --enqueue` and `parley serve`'s job
/// and upload routes use. `SQLiteJobQueue` is the one implementation (a
/// table in DATA-DIR/parley.db, shared between processes). Every method
/// is safe to call from any thread.
public protocol JobQueue: AnyObject, Sendable {
    /// Queues a job; returns its id. `options.output` empty = the worker picks DATA-DIR/hls/ASSET.
    func enqueue(input: String, options: TranscodeOptions, maxAttempts: Int) throws -> Int64

    /// Queues a job submitted over HTTP, unless `cap` jobs are already queued
    /// or running (checked and inserted atomically, so concurrent submissions
    /// cannot overshoot). The output is DATA-DIR/hls/ASSET. Returns the id,
    /// or nil when the queue is full.
    func enqueue(input: String, options: TranscodeOptions, submission: Job.Submission, cap: Int, maxAttempts: Int) throws -> Int64?

    func get(_ id: Int64) throws -> Job?

    /// Jobs, newest first; `state` and `owner` (the submitting token's subject) filter.
    func list(state: Job.State?, owner: String?, limit: Int) throws -> [Job]

    /// Who may see the ladder in DATA-DIR/hls/ASSET: the newest job that wrote
    /// it (nil when no HTTP job did: the command line or the spool made it).
    func submission(forAsset asset: String) throws -> Job.Submission?

    /// Jobs queued or running whose input is `input` (a path) or that name `source` (`upload:ID`).
    func activeCount(input: String, source: String) throws -> Int

    /// Queues the export of recording `id` (a `record-export` job) unless
    /// one is already queued or running for it; returns the job's id.
    func enqueueRecordExport(recording id: String, maxAttempts: Int) throws -> Int64

    /// Takes the oldest runnable queued job and marks it running (atomic,
    /// so two workers never take the same job).
    func claim() throws -> Job?

    func setProgress(_ id: Int64, _ fraction: Double) throws
    func setOutput(_ id: Int64, _ output: String) throws
    func finish(_ id: Int64, output: String) throws

    /// Records a failure: back to `queued` after a backoff of
    /// `retryBase × 2^(attempts-1)` seconds (at most an hour) while attempts
    /// remain and `retry` is set, else `failed`. Returns the new state.
    func fail(_ id: Int64, error: String, retry: Bool, retryBase: Double) throws -> Job.State

    /// Puts a running job back without counting the attempt (clean shutdown).
    func release(_ id: Int64) throws

    /// Re-queues jobs left `running` by a worker that died; returns how many.
    @discardableResult
    func requeueInterrupted() throws -> Int

    /// Seconds until the next queued job becomes runnable (nil: none queued).
    func nextRunnableDelay() throws -> Double?

    // MARK: upload owners
    // Identical content is one file, and each subject that uploaded it owns it and is charged for it.

    /// Records `owner` as an owner of upload `id`; false when it already was one.
    func addUploadOwner(_ id: String, owner: String, size: Int) throws -> Bool

    func uploadOwners(_ id: String) throws -> [String]

    /// Removes `owner`'s claim on upload `id` (every claim when nil); returns the owners removed.
    func removeUploadOwners(_ id: String, owner: String?) throws -> [String]

    /// Every (upload id, owner, size) recorded.
    func uploadOwnerships() throws -> [(id: String, owner: String, size: Int)]
}

/// The defaults callers leave out. Each has its requirement's exact
/// signature, so the call inside goes to the implementation's method (an
/// implementation must have them all, or these would call themselves).
extension JobQueue {
    @discardableResult
    public func enqueue(input: String, options: TranscodeOptions, maxAttempts: Int = 3) throws -> Int64 {
        try enqueue(input: input, options: options, maxAttempts: maxAttempts)
    }

    public func enqueue(input: String, options: TranscodeOptions, submission: Job.Submission, cap: Int,
                        maxAttempts: Int = 3) throws -> Int64? {
        try enqueue(input: input, options: options, submission: submission, cap: cap, maxAttempts: maxAttempts)
    }

    @discardableResult
    public func enqueueRecordExport(recording id: String, maxAttempts: Int = 3) throws -> Int64 {
        try enqueueRecordExport(recording: id, maxAttempts: maxAttempts)
    }

    public func list(state: Job.State? = nil, owner: String? = nil, limit: Int = 100) throws -> [Job] {
        try list(state: state, owner: owner, limit: limit)
    }

    @discardableResult
    public func fail(_ id: Int64, error: String, retry: Bool = true, retryBase: Double = 2) throws -> Job.State {
        try fail(id, error: error, retry: retry, retryBase: retryBase)
    }

    @discardableResult
    public func removeUploadOwners(_ id: String, owner: String? = nil) throws -> [String] {
        try removeUploadOwners(id, owner: owner)
    }
}
