import Foundation
import Synchronization

/// Label pairs of one metric series, e.g. `["reason": "unknown_source"]`.
public typealias MetricLabels = [(String, String)]

/// A monotonically increasing counter. Lock-free; safe from any thread.
public final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    public init() {}
    @inline(__always) public func inc(_ by: Int = 1) { value.add(by, ordering: .relaxed) }
    public var current: Int { value.load(ordering: .relaxed) }
}

/// A value that goes up and down. Lock-free; safe from any thread.
public final class Gauge: Sendable {
    private let value = Atomic<Int>(0)
    public init() {}
    public func set(_ v: Int) { value.store(v, ordering: .relaxed) }
    public func inc(_ by: Int = 1) { value.add(by, ordering: .relaxed) }
    public func dec(_ by: Int = 1) { value.subtract(by, ordering: .relaxed) }
    public var current: Int { value.load(ordering: .relaxed) }
}

/// A Prometheus histogram with fixed upper bounds (in the metric's unit).
public final class Histogram: Sendable {
    public let bounds: [Double]
    private let state: Mutex<(buckets: [Int], sum: Double, count: Int)>

    public init(bounds: [Double]) {
        self.bounds = bounds.sorted()
        self.state = Mutex((Array(repeating: 0, count: bounds.count), 0, 0))
    }

    public func observe(_ v: Double) {
        state.withLock { s in
            for (i, b) in bounds.enumerated() where v <= b { s.buckets[i] += 1 }
            s.sum += v
            s.count += 1
        }
    }

    public var snapshot: (buckets: [Int], sum: Double, count: Int) { state.withLock { $0 } }
}

/// A value read when the registry is rendered (the process's CPU time),
/// not kept up to date by the code it describes.
public final class SampledMetric: Sendable {
    let read: @Sendable () -> Double
    init(_ read: @escaping @Sendable () -> Double) { self.read = read }
}

/// This process's CPU time (user + system, all threads) in seconds, from getrusage.
public enum ProcessCPU {
    public static func seconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6
            + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }
}

public enum MetricKind: String, Sendable { case counter, gauge, histogram }

/// The process's metrics, rendered in the Prometheus text exposition format
/// (version 0.0.4). Registration returns the same object for the same
/// name and labels, so modules can ask for their counters lazily.
public final class MetricsRegistry: Sendable {
    public typealias Kind = MetricKind

    private struct Family {
        var kind: Kind
        var help: String
        var series: [(labels: MetricLabels, metric: AnyObject & Sendable)]
    }

    private let families = Mutex<[String: Family]>([:])

    public init() {}

    /// The process-wide registry `parley serve` exposes on `/metrics`.
    public static let shared = MetricsRegistry()

    public func counter(_ name: String, help: String, labels: MetricLabels = []) -> Counter {
        register(name, .counter, help, labels) { Counter() }
    }

    public func gauge(_ name: String, help: String, labels: MetricLabels = []) -> Gauge {
        register(name, .gauge, help, labels) { Gauge() }
    }

    public func histogram(_ name: String, help: String, labels: MetricLabels = [],
                          bounds: [Double] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]) -> Histogram {
        register(name, .histogram, help, labels) { Histogram(bounds: bounds) }
    }

    /// Registers a series whose value `read` gives each time `/metrics` is
    /// rendered (once per name; a second registration keeps the first).
    public func sampled(_ name: String, _ kind: MetricKind, help: String, _ read: @escaping @Sendable () -> Double) {
        _ = register(name, kind, help, []) { SampledMetric(read) }
    }

    /// Declares a family whose series all carry labels known only later
    /// (`parley_relay_room_participants{room}`), so `/metrics` lists its HELP
    /// and TYPE from the start.
    public func declare(_ name: String, _ kind: MetricKind, help: String) {
        families.withLock { fams in
            if let f = fams[name] { precondition(f.kind == kind, "metric \(name) registered as \(f.kind) and \(kind)") }
            else { fams[name] = Family(kind: kind, help: help, series: []) }
        }
    }

    private func register<M: AnyObject & Sendable>(_ name: String, _ kind: Kind, _ help: String,
                                                   _ labels: MetricLabels, _ make: () -> M) -> M {
        families.withLock { fams in
            var fam = fams[name] ?? Family(kind: kind, help: help, series: [])
            precondition(fam.kind == kind, "metric \(name) registered as \(fam.kind) and \(kind)")
            if let existing = fam.series.first(where: { Self.same($0.labels, labels) }) {
                return existing.metric as! M
            }
            let m = make()
            fam.series.append((labels, m))
            fams[name] = fam
            return m
        }
    }

    private static func same(_ a: MetricLabels, _ b: MetricLabels) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    /// The Prometheus text format of every registered metric.
    public func render() -> String {
        let fams = families.withLock { $0 }
        var out = ""
        for name in fams.keys.sorted() {
            let fam = fams[name]!
            out += "# HELP \(name) \(fam.help)\n# TYPE \(name) \(fam.kind.rawValue)\n"
            for (labels, metric) in fam.series {
                switch metric {
                case let c as Counter: out += "\(name)\(Self.labelText(labels)) \(c.current)\n"
                case let g as Gauge: out += "\(name)\(Self.labelText(labels)) \(g.current)\n"
                case let v as SampledMetric: out += "\(name)\(Self.labelText(labels)) \(Self.number(v.read()))\n"
                case let h as Histogram:
                    let s = h.snapshot
                    for (i, b) in h.bounds.enumerated() {
                        out += "\(name)_bucket\(Self.labelText(labels + [("le", Self.number(b))])) \(s.buckets[i])\n"
                    }
                    out += "\(name)_bucket\(Self.labelText(labels + [("le", "+Inf")])) \(s.count)\n"
                    out += "\(name)_sum\(Self.labelText(labels)) \(Self.number(s.sum))\n"
                    out += "\(name)_count\(Self.labelText(labels)) \(s.count)\n"
                default: break
                }
            }
        }
        return out
    }

    static func number(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
    }

    static func labelText(_ labels: MetricLabels) -> String {
        guard !labels.isEmpty else { return "" }
        let parts = labels.map { k, v -> String in
            let esc = v.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\(k)=\"\(esc)\""
        }
        return "{" + parts.joined(separator: ",") + "}"
    }
}
