// Parley side of tools/bench/srtp-roundtrip: SRTPContext.protectRTP +
// unprotectRTP in a preallocated buffer, the same work as baseline.c.
// Prints packets/s and the malloc calls made inside the timed loop (via
// the LD_PRELOAD counter when present).
#if canImport(Glibc)
import Glibc
#endif

typealias CountFn = @convention(c) () -> Int

@main
struct Bench {
    static func main() throws {
        let iterations = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 200_000 : 200_000
        let key = (0..<30).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) }
        let material = try SRTPKeyMaterial(suite: .aesCM128HmacSHA1_80, keyAndSalt: key)
        // Session setup cost (one per participant and direction on a join).
        var c0 = timespec(), c1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &c0)
        for _ in 0..<50 { _ = try SRTPContext(material: material, direction: .inbound) }
        clock_gettime(CLOCK_MONOTONIC, &c1)
        let createMicros = (Double(c1.tv_sec - c0.tv_sec) * 1e9 + Double(c1.tv_nsec - c0.tv_nsec)) / 50 / 1e3

        let tx = try SRTPContext(material: material, direction: .outbound)
        let rx = try SRTPContext(material: material, direction: .inbound)

        var plain = [UInt8](repeating: 0xAB, count: 1200)
        plain[0] = 0x80; plain[1] = 96
        plain[8] = 0xCA; plain[9] = 0xFE; plain[10] = 0xBA; plain[11] = 0xBE
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 16)
        let plainPtr = UnsafeMutableRawBufferPointer.allocate(byteCount: 1200, alignment: 16)
        plain.withUnsafeBytes { plainPtr.copyMemory(from: $0) }

        // RTLD_DEFAULT (a null handle): finds the LD_PRELOAD counter when loaded.
        let counter = dlsym(nil, "parley_malloc_calls")
        let count: CountFn? = counter.map { unsafeBitCast($0, to: CountFn.self) }

        var t0 = timespec(), t1 = timespec()
        let before = count?() ?? -1
        clock_gettime(CLOCK_MONOTONIC, &t0)
        for i in 0..<iterations {
            plainPtr[2] = UInt8(truncatingIfNeeded: i >> 8)
            plainPtr[3] = UInt8(truncatingIfNeeded: i)
            buffer.baseAddress!.copyMemory(from: plainPtr.baseAddress!, byteCount: 1200)
            let n = try tx.protectRTP(buffer, length: 1200)
            _ = try rx.unprotectRTP(buffer, length: n)
        }
        clock_gettime(CLOCK_MONOTONIC, &t1)
        let after = count?() ?? -1
        let seconds = Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9
        print(Int(Double(iterations) / seconds), count == nil ? "n/a" : String(after - before), Int(createMicros))
    }
}
