import ParleyCore

/// Who may read `/metrics` (config key `metrics-access`): its labels name
/// rooms, so by default only clients on the host itself, or an admin token.
public enum MetricsAccess: String, Sendable {
    /// Anyone.
    case `public`
    /// Clients on a loopback address; others need an `adm` token.
    case loopback
    /// An `adm` token, from anywhere.
    case admin
}

/// `/healthz` (anyone) and `/metrics` (per `access`).
public enum BuiltinRoutes {
    /// - Parameter secret: verifies admin tokens for `/metrics`; without it,
    ///   only what `access` allows without a token is served.
    public static func install(on router: HTTPRouter, metrics: MetricsRegistry = .shared,
                               access: MetricsAccess = .public, secret: [UInt8]? = nil) {
        router.add("GET", .exact("/healthz"), sync: { _ in .json(.ok, ["status": "ok"]) })
        // What `parley load --find-capacity` divides by participant-seconds.
        metrics.sampled("parley_process_cpu_seconds_total", .counter,
                        help: "CPU time (user and system, every thread) the process has used, in seconds.") { ProcessCPU.seconds() }
        let auth = secret.map { BearerAuth(secret: $0) }
        router.add("GET", .exact("/metrics"), sync: HTTPServerResponse.answering { req in
            let open = access == .public || (access == .loopback && req.remoteAddress.isLoopback)
            if !open {
                guard let auth else { throw HTTPRefusal(.forbidden, "/metrics is not served to \(req.remoteAddress.ipString)") }
                _ = try auth.require(.admin, req)
            }
            return .text(.ok, metrics.render(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        })
    }
}
