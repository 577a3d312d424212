// The baseline for tools/bench/relay: a minimal C SFU fan-out.
//
// Same topology as `parley bench relay`: participant i (room-major) is at
// 127.0.0.1:(client_base + i); a datagram from participant i is sent to
// every other participant of its room. recvmmsg in, sendmmsg out, one
// thread, a fixed table instead of a map, no parsing, no statistics, no
// retransmission buffer: what a relay costs with nothing but the syscalls.
//
// usage: relay_forwarder LISTEN_PORT ROOMS PARTICIPANTS CLIENT_BASE
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 2048
#define OUT 1024

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
    printf("ready 127.0.0.1:%d\n", port);
    fflush(stdout);
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iin[i].iov_base = bufs[i]; iin[i].iov_len = SLOT;
            in[i].msg_hdr = (struct msghdr){ .msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iin[i], .msg_iovlen = 1 };
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
    }
}
