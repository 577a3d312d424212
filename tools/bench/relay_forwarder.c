// The baseline for tools/bench/relay: a minimal C SFU fan-out.
//
// Same topology as `parley bench relay`: participant i (room-major) is at
// 127.0.0.1:(client_base + i); a datagram from participant i is sent to
// every other participant of its room. recvmmsg in, sendmmsg out, one
// thread, a fixed table instead of a map, no parsing, no statistics, no
// retransmission buffer: what a relay costs with nothing but the syscalls.
//
// Residence measurement, as in `parley bench relay`: SIGUSR1 with sigqueue
// value 0 turns on SO_TIMESTAMPNS and starts a window; value N > 0 prints
// `residence label=N n=.. p50_us=.. p99_us=.. max_us=..` (arrival in the
// socket to the end of the sendmmsg that sent the copies) and starts anew.
//
// usage: relay_forwarder LISTEN_PORT ROOMS PARTICIPANTS CLIENT_BASE
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 2048
#define OUT 1024

// Log-linear histogram of ns values: 16 buckets per power of two (as
// ParleyCore.LatencyHistogram), percentiles as bucket upper bounds.
static long long hist[61 * 16], hist_n; static uint64_t hist_max;
static int bucket(uint64_t v) {
    if (v < 16) return (int)v;
    int e = 63 - __builtin_clzll(v);
    return (e - 3) * 16 + (int)((v >> (e - 4)) & 15);
}
static uint64_t upper(int b) {
    if (b < 16) return (uint64_t)b;
    int e = b / 16 + 3;
    return (((uint64_t)16 + b % 16 + 1) << (e - 4)) - 1;
}
static double pct_us(double p) {
    if (!hist_n) return -1;
    long long rank = (long long)(p * hist_n + 0.999999), seen = 0;
    if (rank < 1) rank = 1;
    for (int b = 0; b < 61 * 16; b++) {
        seen += hist[b];
        if (seen >= rank) { uint64_t u = upper(b); return (u < hist_max ? u : hist_max) / 1000.0; }
    }
    return hist_max / 1000.0;
}
static volatile sig_atomic_t sig_pending, sig_value;
static void on_usr1(int sig, siginfo_t *si, void *ctx) { (void)sig; (void)ctx; sig_value = si->si_value.sival_int; sig_pending = 1; }

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s LISTEN_PORT ROOMS PARTICIPANTS CLIENT_BASE\n", argv[0]); return 2; }
    int port = atoi(argv[1]), rooms = atoi(argv[2]), per = atoi(argv[3]), base = atoi(argv[4]);
    int total = rooms * per;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) { perror("bind"); return 1; }

    struct sockaddr_in *peers = calloc(total, sizeof *peers);
    for (int i = 0; i < total; i++) {
        peers[i].sin_family = AF_INET;
        peers[i].sin_port = htons(base + i);
        peers[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    static char bufs[BATCH][SLOT];
    static struct mmsghdr in[BATCH], out[OUT];
    static struct iovec iin[BATCH], iout[OUT];
    static struct sockaddr_in from[BATCH];
    static char ctl[BATCH][64];
    int ts_on = 0;
    struct sigaction sa = { .sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO }; // no SA_RESTART: recvmmsg returns EINTR
    sigaction(SIGUSR1, &sa, NULL);
    printf("ready 127.0.0.1:%d\n", port);
    fflush(stdout);
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iin[i].iov_base = bufs[i]; iin[i].iov_len = SLOT;
            in[i].msg_hdr = (struct msghdr){ .msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iin[i], .msg_iovlen = 1,
                                             .msg_control = ts_on ? ctl[i] : NULL, .msg_controllen = ts_on ? sizeof ctl[i] : 0 };
        }
        if (sig_pending) {
            sig_pending = 0;
            if (sig_value == 0) {
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
                ts_on = 1;
            } else {
                printf("residence label=%d n=%lld p50_us=%.1f p99_us=%.1f max_us=%.1f\n", (int)sig_value, hist_n, pct_us(0.5), pct_us(0.99), hist_max / 1000.0);
                fflush(stdout);
            }
            memset(hist, 0, sizeof hist); hist_n = 0; hist_max = 0;
            continue; // rebuild the headers with control space
        }
        int n = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        int o = 0;
        for (int k = 0; k < n; k++) {
            int i = ntohs(from[k].sin_port) - base;
            if (i < 0 || i >= total) continue;
            int first = (i / per) * per;
            for (int j = first; j < first + per; j++) {
                if (j == i) continue;
                if (o == OUT) { sendmmsg(fd, out, o, 0); o = 0; }
                iout[o].iov_base = bufs[k]; iout[o].iov_len = in[k].msg_len;
                out[o].msg_hdr = (struct msghdr){ .msg_name = &peers[j], .msg_namelen = sizeof peers[j], .msg_iov = &iout[o], .msg_iovlen = 1 };
                o++;
            }
        }
        int done = 0;
        while (done < o) {
            int s = sendmmsg(fd, out + done, o - done, 0);
            if (s <= 0) break;
            done += s;
        }
        if (ts_on) {
            struct timespec now; clock_gettime(CLOCK_REALTIME, &now);
            int64_t t = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
            for (int k = 0; k < n; k++)
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&in[k].msg_hdr); c; c = CMSG_NXTHDR(&in[k].msg_hdr, c))
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec ts; memcpy(&ts, CMSG_DATA(c), sizeof ts);
                        int64_t d = t - ((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec);
                        uint64_t v = d > 0 ? (uint64_t)d : 0;
                        hist[bucket(v)]++; hist_n++; if (v > hist_max) hist_max = v;
                    }
        }
    }
}
