// Load generator for tools/bench/udp-echo: sends SIZE-byte datagrams to an
// echo server at a fixed RATE (packets/s) for SECONDS, paced against the
// monotonic clock in sendmmsg batches, and counts the echoes (recvmmsg) on
// the same socket. Busy-polls its own core (pin it with taskset).
//
// Sending uses UDP GSO (UDP_SEGMENT): one sendmsg carries up to 64 datagrams
// of SIZE bytes that the kernel splits, so the generator spends less CPU per
// packet than the servers it measures (on 2 cores it shares the machine with
// them). GSO=0 in the environment falls back to sendmmsg.
//
// usage: udp-load HOST PORT RATE SECONDS SIZE
// prints: sent=N received=M loss_pct=X
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#include <unistd.h>

#include "udp-bench-common.h"

#define BATCH 64
#define SLOT 2048

static uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: %s HOST PORT RATE SECONDS SIZE\n", argv[0]); return 2; }
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int size = atoi(argv[5]);
    if (size < 8 || size > SLOT) { fprintf(stderr, "size 8..%d\n", SLOT); return 2; }
    struct sockaddr_storage ss;
    socklen_t sl;
    int family = parse_address(argv[1], argv[2], &ss, &sl);
    if (family < 0) { fprintf(stderr, "bad host\n"); return 2; }
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    large_buffers(fd, 16 << 20);
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0) { perror("connect"); return 1; }

    const char *g = getenv("GSO");
    int gso = !(g && g[0] == '0');
    int gso_max = 65000 / size; if (gso_max > BATCH) gso_max = BATCH;
    static char gbuf[BATCH * SLOT];
    memset(gbuf, 0xab, sizeof gbuf);
    static char out[BATCH][SLOT], in[BATCH][SLOT];
    static struct iovec oiov[BATCH], iiov[BATCH];
    static struct mmsghdr omsg[BATCH], imsg[BATCH];
    for (int i = 0; i < BATCH; i++) {
        memset(out[i], 0xab, SLOT);
        oiov[i].iov_base = out[i]; oiov[i].iov_len = size;
        omsg[i].msg_hdr.msg_iov = &oiov[i]; omsg[i].msg_hdr.msg_iovlen = 1;
        iiov[i].iov_base = in[i]; iiov[i].iov_len = SLOT;
        imsg[i].msg_hdr.msg_iov = &iiov[i]; imsg[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t sent = 0, received = 0, send_fail = 0;
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end) break;
        uint64_t due = (uint64_t)((double)(t - start) * rate / 1e9);
        if (due > sent) {
            uint64_t want = due - sent;
            if (want > BATCH) want = BATCH;
            if (gso) {
                if (want > (uint64_t)gso_max) want = gso_max;
                struct iovec v = { gbuf, (size_t)want * size };
                char cbuf[CMSG_SPACE(sizeof(uint16_t))] = {0};
                struct msghdr mh = { .msg_iov = &v, .msg_iovlen = 1 };
                if (want > 1) {
                    mh.msg_control = cbuf; mh.msg_controllen = sizeof cbuf;
                    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                    c->cmsg_level = SOL_UDP; c->cmsg_type = UDP_SEGMENT; c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                    *(uint16_t *)CMSG_DATA(c) = (uint16_t)size;
                }
                ssize_t m = sendmsg(fd, &mh, 0);
                if (m > 0) sent += want;
                else if (m < 0 && errno != EAGAIN && errno != EINTR && errno != ENOBUFS) { send_fail++; sent += want; }
            } else {
                for (uint64_t i = 0; i < want; i++) memcpy(out[i], &(uint64_t){sent + i}, 8);
                int m = sendmmsg(fd, omsg, (unsigned)want, 0);
                if (m > 0) sent += m;
                else if (m < 0 && errno != EAGAIN && errno != EINTR) { send_fail++; sent += want; }
            }
        }
        int r = recvmmsg(fd, imsg, BATCH, MSG_DONTWAIT, NULL);
        if (r > 0) received += r;
    }
    // Collect stragglers for 300 ms.
    uint64_t drain_end = now_ns() + 300000000ull;
    while (now_ns() < drain_end && received < sent) {
        int r = recvmmsg(fd, imsg, BATCH, MSG_DONTWAIT, NULL);
        if (r > 0) received += r; else usleep(200);
    }
    double loss = sent ? 100.0 * (double)(sent - (received > sent ? sent : received)) / (double)sent : 0;
    printf("sent=%llu received=%llu loss_pct=%.4f send_fail=%llu\n",
           (unsigned long long)sent, (unsigned long long)received, loss, (unsigned long long)send_fail);
    return 0;
}
