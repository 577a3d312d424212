// Baseline for tools/bench/srtp-roundtrip: raw libsrtp2 from C, the same
// work as the Swift side (copy an RTP packet into a buffer, srtp_protect
// with one session, srtp_unprotect with another), per suite and size:
//   SUITE SIZE ROUNDTRIPS_PER_CPU_SECOND PROTECT_NS MALLOCS_PER_ROUNDTRIP
#define _GNU_SOURCE
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dlfcn.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

// CPU seconds for `iterations` copies + protects (+ unprotects when rx), or -1.
static double timed(srtp_t tx, srtp_t rx, unsigned char *plain, int size, int iterations) {
    unsigned char buf[1500];
    double t0 = cpu_seconds();
    for (int i = 0; i < iterations; i++) {
        plain[2] = (unsigned char)(i >> 8); plain[3] = (unsigned char)i;
        memcpy(buf, plain, size);
        int len = size;
        if (srtp_protect(tx, buf, &len) != srtp_err_status_ok) return -1;
        if (rx && srtp_unprotect(rx, buf, &len) != srtp_err_status_ok) return -1;
    }
    return cpu_seconds() - t0;
}

static int run(const char *name, int gcm, int size, int iterations, long (*count)(void)) {
    unsigned char key[30];
    for (int i = 0; i < 30; i++) key[i] = (unsigned char)(i * 7 + 1);
    srtp_policy_t tx, rx;
    memset(&tx, 0, sizeof tx);
    if (gcm) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&tx.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&tx.rtcp);
    } else {
        srtp_crypto_policy_set_rtp_default(&tx.rtp);
        srtp_crypto_policy_set_rtcp_default(&tx.rtcp);
    }
    tx.key = key;
    tx.window_size = 1024;
    rx = tx;
    tx.ssrc.type = ssrc_any_outbound;
    rx.ssrc.type = ssrc_any_inbound;
    srtp_t stx, srx, stx2;
    if (srtp_create(&stx, &tx) || srtp_create(&srx, &rx) || srtp_create(&stx2, &tx)) return 1;

    unsigned char plain[1200];
    memset(plain, 0xAB, sizeof plain);
    plain[0] = 0x80; plain[1] = 96;
    plain[8] = 0xCA; plain[9] = 0xFE; plain[10] = 0xBA; plain[11] = 0xBE;
    long m0 = count ? count() : 0;
    double roundtrip = timed(stx, srx, plain, size, iterations);
    long m1 = count ? count() : 0;
    double protect = timed(stx2, NULL, plain, size, iterations);
    if (roundtrip < 0 || protect < 0) return 2;
    if (count) printf("%s %d %.0f %.0f %.1f\n", name, size, iterations / roundtrip, protect / iterations * 1e9,
                      (double)(m1 - m0) / iterations);
    else printf("%s %d %.0f %.0f n/a\n", name, size, iterations / roundtrip, protect / iterations * 1e9);
    srtp_dealloc(stx); srtp_dealloc(srx); srtp_dealloc(stx2);
    return 0;
}

int main(int argc, char **argv) {
    int iterations = argc > 1 ? atoi(argv[1]) : 20000;
    if (srtp_init() != srtp_err_status_ok) return 1;
    // The LD_PRELOAD malloc counter, when present (see malloc_count.c).
    long (*count)(void) = (long (*)(void))dlsym(RTLD_DEFAULT, "parley_malloc_calls");
    int sizes[2] = {200, 1200};
    for (int s = 0; s < 2; s++) if (run("AES_CM_128_HMAC_SHA1_80", 0, sizes[s], iterations, count)) return 1;
    for (int s = 0; s < 2; s++) if (run("AEAD_AES_128_GCM", 1, sizes[s], iterations, count)) return 1;
    return 0;
}
