// Baseline for tools/bench/srtp-roundtrip: raw libsrtp2 from C, the same
// work as the Swift side (copy a 1200-byte RTP packet into a buffer,
// srtp_protect with one session, srtp_unprotect with another).
#define _GNU_SOURCE
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dlfcn.h>

int main(int argc, char **argv) {
    int iterations = argc > 1 ? atoi(argv[1]) : 200000;
    unsigned char key[30];
    for (int i = 0; i < 30; i++) key[i] = (unsigned char)(i * 7 + 1);
    if (srtp_init() != srtp_err_status_ok) return 1;
    srtp_policy_t tx, rx;
    memset(&tx, 0, sizeof tx);
    srtp_crypto_policy_set_rtp_default(&tx.rtp);
    srtp_crypto_policy_set_rtcp_default(&tx.rtcp);
    tx.key = key;
    tx.window_size = 1024;
    rx = tx;
    tx.ssrc.type = ssrc_any_outbound;
    rx.ssrc.type = ssrc_any_inbound;
    srtp_t stx, srx;
    // Session setup cost (one per participant and direction on a join).
    struct timespec c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    for (int i = 0; i < 50; i++) {
        if (srtp_create(&srx, &rx)) return 1;
        srtp_dealloc(srx);
    }
    clock_gettime(CLOCK_MONOTONIC, &c1);
    double createMicros = ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / 50 / 1e3;
    if (srtp_create(&stx, &tx) || srtp_create(&srx, &rx)) return 1;

    unsigned char plain[1200], buf[1500];
    memset(plain, 0xAB, sizeof plain);
    plain[0] = 0x80; plain[1] = 96;
    plain[8] = 0xCA; plain[9] = 0xFE; plain[10] = 0xBA; plain[11] = 0xBE;
    // The LD_PRELOAD malloc counter, when present (see malloc_count.c).
    long (*count)(void) = (long (*)(void))dlsym(RTLD_DEFAULT, "parley_malloc_calls");
    long before = count ? count() : -1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < iterations; i++) {
        plain[2] = (unsigned char)(i >> 8); plain[3] = (unsigned char)i;
        memcpy(buf, plain, sizeof plain);
        int len = sizeof plain;
        if (srtp_protect(stx, buf, &len) != srtp_err_status_ok) return 2;
        if (srtp_unprotect(srx, buf, &len) != srtp_err_status_ok) return 3;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    long after = count ? count() : -1;
    if (count) printf("%.0f %ld %.0f\n", iterations / s, after - before, createMicros);
    else printf("%.0f n/a %.0f\n", iterations / s, createMicros);
    return 0;
}
