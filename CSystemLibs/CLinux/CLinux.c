// _GNU_SOURCE only here: see the comment in include/CLinux.h.
#define _GNU_SOURCE 1
#include "CLinux.h"
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>
#include <pthread.h>

_Static_assert(sizeof(struct parley_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(struct parley_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");

int parley_recvmmsg(int fd, struct parley_mmsghdr *vec, unsigned int vlen, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)vec, vlen, flags, NULL);
}

int parley_sendmmsg(int fd, struct parley_mmsghdr *vec, unsigned int vlen, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)vec, vlen, flags);
}

int parley_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int parley_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int parley_epoll_wait(int epfd, struct epoll_event *buf, int maxevents, int timeout_ms) {
    return epoll_wait(epfd, buf, maxevents, timeout_ms);
}

uint32_t parley_epoll_event_events(const struct epoll_event *buf, int i) { return buf[i].events; }
uint64_t parley_epoll_event_data(const struct epoll_event *buf, int i) { return buf[i].data.u64; }
size_t parley_epoll_event_size(void) { return sizeof(struct epoll_event); }

int parley_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

int parley_timerfd_create(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }

int parley_timerfd_settime_ns(int fd, int64_t initial_ns, int64_t interval_ns) {
    struct itimerspec its;
    its.it_value.tv_sec = initial_ns / 1000000000;
    its.it_value.tv_nsec = initial_ns % 1000000000;
    its.it_interval.tv_sec = interval_ns / 1000000000;
    its.it_interval.tv_nsec = interval_ns % 1000000000;
    return timerfd_settime(fd, 0, &its, NULL);
}

static void fill_set(sigset_t *set, const int *signals, int count) {
    sigemptyset(set);
    for (int i = 0; i < count; i++) sigaddset(set, signals[i]);
}

int parley_block_signals(const int *signals, int count) {
    sigset_t set;
    fill_set(&set, signals, count);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int parley_signalfd_read(int fd, int *signo, int *value) {
    struct signalfd_siginfo si;
    ssize_t n = read(fd, &si, sizeof si);
    if (n == (ssize_t)sizeof si) { *signo = (int)si.ssi_signo; *value = si.ssi_int; return 1; }
    if (n < 0 && errno == EAGAIN) return 0;
    return -1;
}

int parley_signalfd_for(const int *signals, int count) {
    sigset_t set;
    fill_set(&set, signals, count);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

size_t parley_cmsg_space(size_t len) { return CMSG_SPACE(len); }
struct cmsghdr *parley_cmsg_firsthdr(struct msghdr *msg) { return CMSG_FIRSTHDR(msg); }
struct cmsghdr *parley_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg) { return CMSG_NXTHDR(msg, cmsg); }
unsigned char *parley_cmsg_data(struct cmsghdr *cmsg) { return CMSG_DATA(cmsg); }
size_t parley_cmsg_len(size_t len) { return CMSG_LEN(len); }

int parley_set_receive_timestamps(int fd, int on) {
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
}

int64_t parley_receive_timestamp_ns(struct msghdr *msg) {
    if (msg->msg_controllen == 0) return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    }
    return 0;
}

size_t parley_receive_timestamp_space(void) { return CMSG_SPACE(sizeof(struct timespec)); }

int parley_so_reuseport(void) { return SO_REUSEPORT; }
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
int parley_udp_segment(void) { return UDP_SEGMENT; }
int parley_ip_pktinfo(void) { return IP_PKTINFO; }
int parley_ipv6_recvpktinfo(void) { return IPV6_RECVPKTINFO; }

int parley_accept4_nonblock(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int parley_socket_nonblock(int domain, int type, int protocol) {
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
}

void parley_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }

int parley_syncfs(int fd) { return syncfs(fd); }
