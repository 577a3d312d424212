// Load generator for tools/bench/srtp-relay: SRTP (or plain RTP) publishers and
// subscribers on 127.0.0.1 against `parley bench srtp`.
//
// Topology: participant i at 127.0.0.1:(CLIENT_BASE + i); the first PUBLISHERS
// send one stream each with SSRC SSRC_BASE + i; every other participant
// receives every stream. In srtp mode the publishers protect with their fixed
// send key (see SRTPBench.key in Sources/ParleyBench/SRTPBench.swift) and the
// first subscriber unprotects everything it receives with its fixed receive
// key: every forwarded packet it gets must authenticate (auth_fail counts
// those that do not). The RTP header stays in the clear under SRTP, so each
// step's packets are recognised by their RTP timestamp (= the step id).
//
// Rate search: doubling, then bisection, for the highest publisher send rate
// whose forwarded packets arrive with < 0.1 % loss; at each step the server's
// CPU seconds come from /proc/PID/stat (utime + stime).
//
// With SRTP_KEYS=FILE in the environment the keys are not the fixed ones but
// those FILE lists (`parley bench srtp --mode dtls --keys-out FILE`: the keys
// each participant exported from its DTLS handshake with the relay), one line
// per participant: `i send-hex receive-hex` (master key || salt).
//
// usage: srtp_load MODE(srtp|gcm|plain) SERVER_PORT SERVER_PID PARTICIPANTS PUBLISHERS CLIENT_BASE SSRC_BASE SIZE [STEP_SECONDS] [START_RATE]
// Prints STEP lines and one RESULT line (key=value).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <srtp2/srtp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXP 256
#define RB 64

static int srtp_mode, gcm, server_port, server_pid, nparts, npubs, client_base, size;
static uint32_t ssrc_base, step_id = 1;
static int fds[MAXP], epfd;
static uint16_t seq[MAXP];
static srtp_t tx[MAXP];   // publishers' outbound sessions
static srtp_t verifier;    // first subscriber's inbound session
static long long sent, received, stale, verified, auth_fail;

static int64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec; }

static double server_cpu(void) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long ut = 0, st = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        if (++field == 14) ut = strtoul(tok, NULL, 10);
        if (field == 15) { st = strtoul(tok, NULL, 10); break; }
    }
    return (double)(ut + st) / sysconf(_SC_CLK_TCK);
}

static unsigned char file_keys[MAXP][2][30];
static int have_file_keys;

// SRTP_KEYS: `i send-hex receive-hex` per line (the DTLS-exported keys).
static void load_keys(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(1); }
    int i;
    char hex[2][128];
    while (fscanf(f, "%d %127s %127s", &i, hex[0], hex[1]) == 3) {
        if (i < 0 || i >= MAXP) continue;
        for (int d = 0; d < 2; d++)
            for (int j = 0; j < 30 && hex[d][2 * j] && hex[d][2 * j + 1]; j++)
                sscanf(hex[d] + 2 * j, "%2hhx", &file_keys[i][d][j]);
    }
    fclose(f);
    have_file_keys = 1;
}

// Mirrors SRTPBench.key(participant:receive:suite:) (GCM uses the first 28 bytes),
// or the key SRTP_KEYS lists.
static void key_for(int i, int receive, unsigned char out[30]) {
    if (have_file_keys) { memcpy(out, file_keys[i][receive ? 1 : 0], 30); return; }
    for (int j = 0; j < 30; j++) out[j] = (unsigned char)(i * 131 + j * 7 + 1 + (receive ? 100 : 0));
}

static srtp_t session(int i, int receive) {
    unsigned char key[30];
    key_for(i, receive, key);
    srtp_policy_t p;
    memset(&p, 0, sizeof p);
    if (gcm) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtcp);
    } else {
        srtp_crypto_policy_set_rtp_default(&p.rtp);
        srtp_crypto_policy_set_rtcp_default(&p.rtcp);
    }
    p.ssrc.type = receive ? ssrc_any_inbound : ssrc_any_outbound;
    p.key = key;
    p.window_size = 1024;
    srtp_t s;
    if (srtp_create(&s, &p) != srtp_err_status_ok) { fprintf(stderr, "srtp_create failed\n"); exit(1); }
    return s;
}

static void drain(int wait_ms) {
    struct epoll_event ev[MAXP];
    static char bufs[RB][2048];
    static struct mmsghdr m[RB];
    static struct iovec io[RB];
    int n = epoll_wait(epfd, ev, MAXP, wait_ms);
    for (int e = 0; e < n; e++) {
        int i = ev[e].data.u32;
        for (;;) {
            for (int k = 0; k < RB; k++) {
                io[k].iov_base = bufs[k];
                io[k].iov_len = sizeof bufs[k];
                memset(&m[k].msg_hdr, 0, sizeof m[k].msg_hdr);
                m[k].msg_hdr.msg_iov = &io[k];
                m[k].msg_hdr.msg_iovlen = 1;
            }
            int r = recvmmsg(fds[i], m, RB, MSG_DONTWAIT, NULL);
            if (r <= 0) break;
            for (int k = 0; k < r; k++) {
                unsigned char *b = (unsigned char *)bufs[k];
                int len = (int)m[k].msg_len;
                if (len < 12 || (b[0] >> 6) != 2 || (b[1] >= 192 && b[1] <= 223)) continue; // RTCP (relay RR)
                uint32_t ts;
                memcpy(&ts, b + 4, 4);
                if (ntohl(ts) != step_id) { stale++; continue; }
                received++;
                if (srtp_mode && i == npubs) {
                    if (srtp_unprotect(verifier, b, &len) == srtp_err_status_ok) verified++; else auth_fail++;
                }
            }
            if (r < RB) break;
        }
    }
}

static void send_packets(int i, int count) {
    static char bufs[16][2048];
    static struct mmsghdr m[16];
    static struct iovec io[16];
    static struct sockaddr_in to;
    to.sin_family = AF_INET;
    to.sin_port = htons(server_port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (count > 0) {
        int c = count > 16 ? 16 : count;
        for (int k = 0; k < c; k++) {
            unsigned char *b = (unsigned char *)bufs[k];
            uint16_t s = seq[i]++;
            b[0] = 0x80; b[1] = size <= 400 ? 111 : 96; b[2] = s >> 8; b[3] = s & 0xff;
            uint32_t ts = htonl(step_id), ssrc = htonl(ssrc_base + i);
            memcpy(b + 4, &ts, 4);
            memcpy(b + 8, &ssrc, 4);
            memset(b + 12, s & 0xff, size - 12);
            int len = size;
            if (srtp_mode && srtp_protect(tx[i], b, &len) != srtp_err_status_ok) { fprintf(stderr, "srtp_protect failed\n"); exit(1); }
            io[k].iov_base = b;
            io[k].iov_len = len;
            memset(&m[k].msg_hdr, 0, sizeof m[k].msg_hdr);
            m[k].msg_hdr.msg_name = &to;
            m[k].msg_hdr.msg_namelen = sizeof to;
            m[k].msg_hdr.msg_iov = &io[k];
            m[k].msg_hdr.msg_iovlen = 1;
        }
        int done = 0;
        while (done < c) {
            int r = sendmmsg(fds[i], m + done, c - done, 0);
            if (r < 0) { if (errno == EINTR || errno == EAGAIN) continue; perror("sendmmsg"); exit(1); }
            done += r;
        }
        sent += c;
        count -= c;
    }
}

// One step at `rate` packets/s per publisher for `seconds`; returns the loss
// ratio (from what was actually sent), or 1 when the generator could not
// send 90 % of its schedule. Paced as in relay_load.c: never more than 20 ms
// of the schedule at once (a single core that fell behind would otherwise
// dump its backlog into the relay's socket buffer); the rest is skipped.
static double step(double rate, double seconds, double *fwd_pps, double *per_cpu) {
    step_id++;
    sent = received = stale = 0;
    double cpu0 = server_cpu();
    int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9);
    long long due_total = 0, skipped = 0, cap = (long long)(rate * 0.020) + 16;
    for (int64_t t = start; t < end; t = now_ns()) {
        long long due = (long long)((t - start) / 1e9 * rate);
        if (due - due_total > cap) { skipped += due - due_total - cap; due_total = due - cap; }
        if (due > due_total) {
            for (int p = 0; p < npubs; p++) send_packets(p, (int)(due - due_total));
            due_total = due;
        }
        drain(0);
    }
    // Let the last packets arrive.
    int64_t settle = now_ns() + 300000000LL;
    while (now_ns() < settle) drain(10);
    double cpu = server_cpu() - cpu0;
    double elapsed = (now_ns() - start) / 1e9 - 0.3;
    long long expected = sent * (nparts - 1);
    double loss = expected > 0 ? 1.0 - (double)received / expected : 1;
    *fwd_pps = received / elapsed;
    *per_cpu = cpu > 0 ? received / cpu : 0;
    double behind = rate > 0 ? skipped / (rate * seconds) : 0;
    printf("STEP rate=%.0f sent=%lld expected=%lld received=%lld loss=%.5f fwd_pps=%.0f server_cpu_s=%.2f fwd_per_cpu_s=%.0f verified=%lld auth_fail=%lld generator_behind=%.2f%%\n",
           rate, sent, expected, received, loss < 0 ? 0 : loss, *fwd_pps, cpu, *per_cpu, verified, auth_fail, behind * 100);
    fflush(stdout);
    return behind >= 0.1 ? 1 : loss;
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: %s srtp|gcm|plain SERVER_PORT SERVER_PID PARTICIPANTS PUBLISHERS CLIENT_BASE SSRC_BASE SIZE [STEP_SECONDS] [START_RATE]\n", argv[0]);
        return 2;
    }
    srtp_mode = strcmp(argv[1], "plain") != 0;  // srtp (AES_CM_128_HMAC_SHA1_80) or gcm (AEAD_AES_128_GCM)
    gcm = strcmp(argv[1], "gcm") == 0;
    server_port = atoi(argv[2]); server_pid = atoi(argv[3]); nparts = atoi(argv[4]); npubs = atoi(argv[5]);
    client_base = atoi(argv[6]); ssrc_base = (uint32_t)atol(argv[7]); size = atoi(argv[8]);
    double seconds = argc > 9 ? atof(argv[9]) : 2, rate = argc > 10 ? atof(argv[10]) : 2000;
    if (nparts < 2 || nparts > MAXP || npubs < 1 || npubs >= nparts || size < 24 || size > 1400) { fprintf(stderr, "bad arguments\n"); return 2; }
    if (srtp_init() != srtp_err_status_ok) { fprintf(stderr, "srtp_init failed\n"); return 1; }
    const char *keys = getenv("SRTP_KEYS");
    if (keys && *keys) load_keys(keys);
    epfd = epoll_create1(0);
    for (int i = 0; i < nparts; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        int big = 16 << 20;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(client_base + i), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (bind(fds[i], (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
        epoll_ctl(epfd, EPOLL_CTL_ADD, fds[i], &ev);
        seq[i] = (uint16_t)(i * 1000);
        if (srtp_mode && i < npubs) tx[i] = session(i, 0);
    }
    if (srtp_mode) verifier = session(npubs, 1);

    // Doubling until loss, then bisection between the last good and first bad rate.
    double good = 0, good_fwd = 0, good_cpu = 0, bad = 0, fwd, per_cpu;
    for (int k = 0; k < 12; k++) {
        if (step(rate, seconds, &fwd, &per_cpu) < 0.001) { good = rate; good_fwd = fwd; good_cpu = per_cpu; rate *= 2; }
        else { bad = rate; break; }
    }
    for (int k = 0; bad > 0 && k < 5; k++) {
        double mid = (good + bad) / 2;
        if (step(mid, seconds, &fwd, &per_cpu) < 0.001) { good = mid; good_fwd = fwd; good_cpu = per_cpu; }
        else bad = mid;
    }
    printf("RESULT mode=%s size=%d loss_free_send_pps=%.0f fwd_pps=%.0f fwd_per_cpu_s=%.0f verified=%lld auth_fail=%lld\n",
           argv[1], size, good * npubs, good_fwd, good_cpu, verified, auth_fail);
    return 0;
}
