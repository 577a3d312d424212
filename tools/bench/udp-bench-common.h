// Shared by udp-echo-server.c and udp-load.c (tools/bench/udp-echo).
#ifndef PARLEY_UDP_BENCH_COMMON_H
#define PARLEY_UDP_BENCH_COMMON_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

// Fills *ss from a numeric IPv4/IPv6 host and a port; returns the family or -1.
static int parse_address(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET; s4->sin_port = htons(atoi(port)); *len = sizeof *s4;
        return AF_INET;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6; s6->sin6_port = htons(atoi(port)); *len = sizeof *s6;
        return AF_INET6;
    }
    return -1;
}

// Large socket buffers: the *FORCE options as root, else the clamped ones.
static void large_buffers(int fd, int bytes) {
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}
#endif
