import Foundation

/// Deletes recordings nobody has written to for `days` days: a directory
/// under the recordings directory whose newest file is older than that
/// (a running recording touches its files at every sync, so it is never
/// old). Returns the ids deleted.
public enum Retention {
    @discardableResult
    public static func prune(directory: String, olderThanDays days: Int, now: Date = Date()) -> [String] {
        guard days > 0, let ids = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        let cutoff = now.addingTimeInterval(-Double(days) * 86_400)
        var deleted: [String] = []
        for id in ids.sorted() {
            let dir = directory + "/" + id
            guard FileManager.default.fileExists(atPath: dir + "/" + RecordingIndex.fileName),
                  let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            let newest = files.compactMap { try? FileManager.default.attributesOfItem(atPath: dir + "/" + $0)[.modificationDate] as? Date }.max()
            guard let newest, newest < cutoff else { continue }
            if (try? FileManager.default.removeItem(atPath: dir)) != nil { deleted.append(id) }
        }
        return deleted
    }
}
