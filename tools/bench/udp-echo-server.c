// Baseline for tools/bench/udp-echo: the smallest fast UDP echo server.
// One thread, blocking recvmmsg (MSG_WAITFORONE) into preallocated buffers,
// then sendmmsg of the same buffers back to each source. No epoll, no copies:
// this is the physical limit Parley's event-loop echo is compared against.
//
// usage: udp-echo-server HOST PORT [BATCH]    (SIGINT/SIGTERM to stop)
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "udp-bench-common.h"

#define MAXBATCH 1024
#define SLOT 2048

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s HOST PORT [BATCH]\n", argv[0]); return 2; }
    int batch = argc > 3 ? atoi(argv[3]) : 64;
    if (batch < 1 || batch > MAXBATCH) batch = 64;
    struct sockaddr_storage ss;
    socklen_t sl;
    int family = parse_address(argv[1], argv[2], &ss, &sl);
    if (family < 0) { fprintf(stderr, "bad host\n"); return 2; }

    int fd = socket(family, SOCK_DGRAM, 0);
    large_buffers(fd, 4 << 20);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) { perror("bind"); return 1; }

    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; // no SA_RESTART: recvmmsg returns EINTR
    sigaction(SIGINT, &sa, NULL); sigaction(SIGTERM, &sa, NULL);

    static char bufs[MAXBATCH][SLOT];
    static struct sockaddr_storage names[MAXBATCH];
    static struct iovec iov[MAXBATCH];
    static struct mmsghdr msgs[MAXBATCH];
    for (int i = 0; i < batch; i++) {
        iov[i].iov_base = bufs[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &names[i];
    }
    printf("listening udp-echo %s:%s\n", argv[1], argv[2]);
    fflush(stdout);
    unsigned long long echoed = 0;
    while (!stop) {
        for (int i = 0; i < batch; i++) { iov[i].iov_len = SLOT; msgs[i].msg_hdr.msg_namelen = sizeof names[i]; }
        int n = recvmmsg(fd, msgs, batch, MSG_WAITFORONE, NULL);
        if (n < 0) { if (errno == EINTR) continue; perror("recvmmsg"); return 1; }
        for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
        int done = 0;
        while (done < n) {
            int m = sendmmsg(fd, msgs + done, n - done, 0);
            if (m < 0) { if (errno == EINTR) continue; done++; continue; } // drop one on error
            done += m;
        }
        echoed += n;
    }
    printf("{\"echoed\":%llu}\n", echoed);
    return 0;
}
