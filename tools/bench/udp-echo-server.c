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

#define MAXBATCH 1024
#define SLOT 2048

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s HOST PORT [BATCH]\n", argv[0]); return 2; }
    int batch = argc > 3 ? atoi(argv[3]) : 64;
    if (batch < 1 || batch > MAXBATCH) batch = 64;
    struct sockaddr_storage ss; memset(&ss, 0, sizeof ss);
    socklen_t sl;
    int family;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, argv[1], &s4->sin_addr) == 1) {
        family = AF_INET; s4->sin_family = AF_INET; s4->sin_port = htons(atoi(argv[2])); sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, argv[1], &s6->sin6_addr) == 1) {
        family = AF_INET6; s6->sin6_family = AF_INET6; s6->sin6_port = htons(atoi(argv[2])); sl = sizeof *s6;
    } else { fprintf(stderr, "bad host\n"); return 2; }

    int fd = socket(family, SOCK_DGRAM, 0);
    int big = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
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
