// CLinux: the few Linux calls Swift's Glibc module does not expose.
//
// Why a shim: Glibc hides recvmmsg/sendmmsg and struct mmsghdr behind
// _GNU_SOURCE, and defining _GNU_SOURCE in a header that Swift imports makes
// fd_set clash between modules. So _GNU_SOURCE is defined only inside
// CLinux.c, and this header declares a layout-identical parley_mmsghdr plus
// thin wrapper functions.
#ifndef PARLEY_CLINUX_H
#define PARLEY_CLINUX_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <time.h>

/// Same layout as glibc's struct mmsghdr (checked by a static assert in CLinux.c).
struct parley_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

int parley_recvmmsg(int fd, struct parley_mmsghdr *vec, unsigned int vlen, int flags);
int parley_sendmmsg(int fd, struct parley_mmsghdr *vec, unsigned int vlen, int flags);

// epoll: struct epoll_event is packed on x86_64; wrappers read/write it for Swift.
int parley_epoll_create(void);
int parley_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// Waits for events; fills parallel arrays of event masks and data words.
int parley_epoll_wait(int epfd, struct epoll_event *buf, int maxevents, int timeout_ms);
uint32_t parley_epoll_event_events(const struct epoll_event *buf, int i);
uint64_t parley_epoll_event_data(const struct epoll_event *buf, int i);
size_t parley_epoll_event_size(void);

int parley_eventfd(unsigned int initval, int flags);
int parley_timerfd_create(void);
int parley_timerfd_settime_ns(int fd, int64_t initial_ns, int64_t interval_ns);
/// Blocks the given signals in the calling thread and returns a signalfd for them.
int parley_signalfd_for(const int *signals, int count);
/// Reads one signal from a (non-blocking) signalfd: 1 with its number and
/// the sigqueue(3) value, 0 if none is pending, -1 on error.
int parley_signalfd_read(int fd, int *signo, int *value);
/// Blocks the given signals in the calling thread (new threads inherit the mask).
int parley_block_signals(const int *signals, int count);

// cmsg helpers (CMSG_* are macros).
size_t parley_cmsg_space(size_t len);
struct cmsghdr *parley_cmsg_firsthdr(struct msghdr *msg);
struct cmsghdr *parley_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg);
unsigned char *parley_cmsg_data(struct cmsghdr *cmsg);
size_t parley_cmsg_len(size_t len);
/// Turns kernel receive timestamps (SO_TIMESTAMPNS) on or off; 0 or -1 (errno).
int parley_set_receive_timestamps(int fd, int on);
/// The SO_TIMESTAMPNS receive time (CLOCK_REALTIME, ns) in `msg`'s control
/// data, or 0 if it carries none.
int64_t parley_receive_timestamp_ns(struct msghdr *msg);
/// Control buffer bytes one receive timestamp needs.
size_t parley_receive_timestamp_space(void);

/// Socket option constants that live behind _GNU_SOURCE or newer headers.
int parley_so_reuseport(void);
int parley_udp_segment(void);
int parley_ip_pktinfo(void);
int parley_ipv6_recvpktinfo(void);

/// Names the calling thread (visible in top -H, /proc/self/task/*/comm); max 15 chars.
void parley_set_thread_name(const char *name);

/// syncfs(2): writes back and flushes the whole filesystem holding `fd`
/// (one journal commit); -1 and errno on failure.
int parley_syncfs(int fd);

int parley_accept4_nonblock(int fd, struct sockaddr *addr, socklen_t *len);
int parley_socket_nonblock(int domain, int type, int protocol);

#endif
