// Parley side of tools/bench/srtp-roundtrip: SRTPContext.protectRTP and
// unprotectRTP in a preallocated buffer, the same work as baseline.c.
// For each suite and packet size prints one line:
//   SUITE SIZE ROUNDTRIPS_PER_CPU_SECOND PROTECT_NS MALLOCS_PER_ROUNDTRIP
// CPU time is the process's (CLOCK_PROCESS_CPUTIME_ID): other load on the
// machine does not count. Mallocs come from the LD_PRELOAD counter when present.
#if canImport(Glibc)
import Glibc
#endif

typealias CountFn = @convention(c) () -> Int

@main
struct Bench {
    static func cpuSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    static func main() throws {
        let iterations = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 200_000 : 200_000
        // RTLD_DEFAULT (a null handle): finds the LD_PRELOAD counter when loaded.
        let count: CountFn? = dlsym(nil, "parley_malloc_calls").map { unsafeBitCast($0, to: CountFn.self) }
        for (suite, name) in [(SRTPSuite.aesCM128HmacSHA1_80, "AES_CM_128_HMAC_SHA1_80"), (.aeadAES128GCM, "AEAD_AES_128_GCM")] {
            for size in [200, 1200] {
                let key = (0..<(suite.keyLength + suite.saltLength)).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) }
                let material = try SRTPKeyMaterial(suite: suite, keyAndSalt: key)
                let tx = try SRTPContext(material: material, direction: .outbound)
                let rx = try SRTPContext(material: material, direction: .inbound)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 16)
                let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
                plain.initializeMemory(as: UInt8.self, repeating: 0xAB)
                plain[0] = 0x80; plain[1] = 96
                plain[8] = 0xCA; plain[9] = 0xFE; plain[10] = 0xBA; plain[11] = 0xBE

                // protect + unprotect round trips
                let m0 = count?() ?? 0
                let t0 = cpuSeconds()
                for i in 0..<iterations {
                    plain[2] = UInt8(truncatingIfNeeded: i >> 8)
                    plain[3] = UInt8(truncatingIfNeeded: i)
                    buffer.baseAddress!.copyMemory(from: plain.baseAddress!, byteCount: size)
                    let n = try tx.protectRTP(buffer, length: size)
                    _ = try rx.unprotectRTP(buffer, length: n)
                }
                let t1 = cpuSeconds()
                let m1 = count?() ?? 0

                // protect only (a fresh outbound context: indices continue upward)
                let tx2 = try SRTPContext(material: material, direction: .outbound)
                let t2 = cpuSeconds()
                for i in 0..<iterations {
                    plain[2] = UInt8(truncatingIfNeeded: i >> 8)
                    plain[3] = UInt8(truncatingIfNeeded: i)
                    buffer.baseAddress!.copyMemory(from: plain.baseAddress!, byteCount: size)
                    _ = try tx2.protectRTP(buffer, length: size)
                }
                let t3 = cpuSeconds()
                let mallocs = count == nil ? "n/a" : String(Double(m1 - m0) / Double(iterations))
                print(name, size, Int(Double(iterations) / (t1 - t0)), Int((t3 - t2) / Double(iterations) * 1e9), mallocs)
                buffer.deallocate()
                plain.deallocate()
            }
        }
    }
}
