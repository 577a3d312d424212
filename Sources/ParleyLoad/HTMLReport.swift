import Foundation

/// The report as one self-contained HTML page: the summary table and three
/// charts over time (latency p99, loss, throughput) drawn as inline SVG.
/// No scripts, no external resources.
extension LoadReport {
    public var html: String {
        let t = timeline.map(\.t)
        var page = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>parley load report</title>
        <style>
        body{font-family:sans-serif;margin:24px;color:#222;background:#fff}
        pre{background:#f4f4f4;padding:12px;font-size:13px}
        .chart{margin:18px 0}
        h1{font-size:20px} h2{font-size:16px;margin-bottom:4px}
        .pass{color:#187a2f} .fail{color:#b00020}
        </style></head><body>
        <h1>parley load media: <span class="\(passed ? "pass" : "fail")">\(passed ? "pass" : "FAIL")</span></h1>
        <p>\(Self.escape(options.url)), \(options.rooms) rooms × \(options.perRoom) participants
        (\(options.publishers) publishing), \(options.audio ? "Opus audio" : "no audio")\(options.video.map { ", video \($0)" } ?? ""),
        \(options.suite.sdesName), \(String(format: "%.0f", options.duration.seconds)) s</p>
        <pre>\(Self.escape(table))</pre>

        """
        page += Self.chart(id: "latency", title: "One-way latency p99 (ms)", t: t,
                           series: [("p99", "#1f77b4", timeline.map { $0.p99Milliseconds })])
        page += Self.chart(id: "loss", title: "Loss (%)", t: t, series: [("loss", "#d62728", timeline.map { $0.lossPercent })])
        page += Self.chart(id: "throughput", title: "Throughput (packets/s)", t: t,
                           series: [("sent", "#2ca02c", timeline.map { $0.sentPacketsPerSecond }),
                                    ("received", "#ff7f0e", timeline.map { $0.receivedPacketsPerSecond })])
        page += Self.chart(id: "participants", title: "Participants", t: t,
                           series: [("started", "#7f7f7f", timeline.map { Double($0.participants) }),
                                    ("receiving media", "#9467bd", timeline.map { Double($0.mediaFlowing) })])
        page += "</body></html>\n"
        return page
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// A line chart: x = seconds, one polyline per series (nil values leave a gap).
    static func chart(id: String, title: String, t: [Double], series: [(name: String, color: String, values: [Double?])]) -> String {
        let w = 720.0, h = 220.0, left = 60.0, right = 16.0, top = 12.0, bottom = 32.0
        let pw = w - left - right, ph = h - top - bottom
        let tMax = max(t.last ?? 1, 1)
        let all = series.flatMap { $0.values.compactMap { $0 } }
        var yMax = all.max() ?? 1
        if yMax <= 0 { yMax = 1 }
        yMax = niceCeiling(yMax)
        func x(_ v: Double) -> Double { left + v / tMax * pw }
        func y(_ v: Double) -> Double { top + ph - v / yMax * ph }
        var svg = "<div class=\"chart\"><h2>\(escape(title))</h2>\n"
        svg += "<svg id=\"\(id)\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\">\n"
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n"
        for i in 0...4 {
            let v = yMax * Double(i) / 4
            svg += "<line x1=\"\(left)\" x2=\"\(left + pw)\" y1=\"\(fmt(y(v)))\" y2=\"\(fmt(y(v)))\" stroke=\"#e0e0e0\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(fmt(y(v) + 4))\" font-size=\"11\" text-anchor=\"end\">\(label(v))</text>\n"
        }
        for i in 0...5 {
            let v = tMax * Double(i) / 5
            svg += "<text x=\"\(fmt(x(v)))\" y=\"\(fmt(top + ph + 16))\" font-size=\"11\" text-anchor=\"middle\">\(label(v))s</text>\n"
        }
        for (k, s) in series.enumerated() {
            var runs: [[String]] = [[]]
            for (i, v) in s.values.enumerated() where i < t.count {
                if let v { runs[runs.count - 1].append("\(fmt(x(t[i]))),\(fmt(y(v)))") } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
            }
            for r in runs where !r.isEmpty {
                if r.count == 1 {
                    let xy = r[0].split(separator: ",")
                    svg += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"2.5\" fill=\"\(s.color)\"/>\n"
                } else {
                    svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\" points=\"\(r.joined(separator: " "))\"/>\n"
                }
            }
            svg += "<text x=\"\(fmt(left + 8 + Double(k) * 140))\" y=\"\(fmt(h - 2))\" font-size=\"12\" fill=\"\(s.color)\">■ \(escape(s.name))</text>\n"
        }
        svg += "</svg></div>\n"
        return svg
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    static func label(_ v: Double) -> String {
        if v >= 1e6 { return String(format: "%.1fM", v / 1e6) }
        if v >= 1e4 { return String(format: "%.0fk", v / 1e3) }
        if v == v.rounded() { return String(format: "%.0f", v) }
        return String(format: "%.2g", v)
    }

    /// 1, 2 or 5 times a power of ten, at least `v`.
    static func niceCeiling(_ v: Double) -> Double {
        let p = pow(10, floor(log10(v)))
        for m in [1.0, 2.0, 5.0, 10.0] where m * p >= v { return m * p }
        return 10 * p
    }
}
