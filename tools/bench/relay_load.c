// Load generator for tools/bench/relay: RTP publishers and subscribers on
// 127.0.0.1, against `parley bench relay` or relay_forwarder (same topology:
// participant i, room-major, at 127.0.0.1:(client_base + i); the first
// PUBLISHERS of each room send one RTP stream with SSRC ssrc_base + i; every
// other participant of the room receives it).
//
// It finds the highest send rate with < 0.1 % loss (doubling, then
// bisecting), and at each step reads the server's CPU time from
// /proc/PID/stat (utime + stime). Then it measures one-way latency at half
// that rate: the send time (CLOCK_REALTIME) is in the payload, the receive
// time is the kernel's SO_TIMESTAMPNS stamp on the subscriber socket, so the
// generator's own loop does not add to it.
//
// Latency runs are repeated (env LAT_REPEAT, default 5, and more until
// three were quiet, see latency_runs) because one run's p99 on a VM is
// decided by a few scheduling stalls: each run prints its p50/p99, the
// hypervisor's steal time on both cores (/proc/stat) and the number of
// 10 ms windows holding a sample over 1 ms (one stall = one or two
// windows; a relay that is slow per packet fills many). The summary line
// gives the median p50 and p99 of all runs, their min/max, and the median
// p50/p99 of the quiet runs. Around each run the server gets SIGUSR1
// (sigqueue value 0 before, the run's label after: 1..N at half load,
// 101..100+N light) and prints its own residence times.
//
// Pacing: the publishers' schedule is kept between receives too (after
// every recvmmsg), so the generator's own receive work (ten copies per
// packet sent in 1 -> 10) does not turn its sends into bursts. Env BURST
// (1..16, default 16): the most consecutive packets one publisher sends
// at once before the next publisher's turn.
//
// usage: relay_load SERVER_PORT SERVER_PID ROOMS PARTICIPANTS PUBLISHERS CLIENT_BASE SSRC_BASE SIZE [STEP_SECONDS] [START_RATE] [fixed|latency]
// With `fixed`: one step at START_RATE only (the allocation check uses it);
// with `latency`: only the latency runs, at START_RATE.
// Prints: STEP ..., RESULT ..., LATRUN ..., LATENCY ... lines (key=value).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBATCH 64
#define SBATCH 16
static int burst = SBATCH; // env BURST: most consecutive packets per publisher

static int total, rooms, per, pubs, base, size, server_port, server_pid;
static uint32_t ssrc_base;
static int *fds;
static int epfd;
static uint16_t *seqs;
static uint32_t step_id;
static long long sent, received, stale;
static int64_t *lat, *lat_tx; static long long nlat, maxlat = 4 << 20;
static int server_core = 0, load_core = 1;

static int64_t now_ns(clockid_t c) { struct timespec t; clock_gettime(c, &t); return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec; }

static double server_cpu(void) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f); fclose(f); buf[n] = 0;
    char *p = strrchr(buf, ')');  // comm may contain spaces
    if (!p) return -1;
    unsigned long ut = 0, st = 0; int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14) ut = strtoul(tok, NULL, 10);
        if (field == 15) { st = strtoul(tok, NULL, 10); break; }
    }
    return (double)(ut + st) / sysconf(_SC_CLK_TCK);
}

// Steal time of one CPU in ms (/proc/stat "cpuN" field 8, USER_HZ ticks).
static double steal_ms(int cpu) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512], want[16];
    snprintf(want, sizeof want, "cpu%d ", cpu);
    double v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, strlen(want)) != 0) continue;
        unsigned long long x[8] = {0};
        if (sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu", &x[0], &x[1], &x[2], &x[3], &x[4], &x[5], &x[6], &x[7]) == 8)
            v = x[7] * 1000.0 / sysconf(_SC_CLK_TCK);
        break;
    }
    fclose(f);
    return v;
}

// Datagrams the kernel dropped at the server's socket (its receive buffer
// was full): the "drops" column of /proc/net/udp for the server's port.
static long long server_socket_drops(void) {
    FILE *f = fopen("/proc/net/udp", "r");
    if (!f) return -1;
    char line[512], port[8];
    snprintf(port, sizeof port, ":%04X", server_port);
    long long drops = 0;
    while (fgets(line, sizeof line, f)) {
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        char *tok[16]; int n = 0;
        for (char *t = strtok(line, " \t\n"); t && n < 16; t = strtok(NULL, " \t\n")) tok[n++] = t;
        if (n < 13) continue;
        char *colon = strrchr(tok[1], ':');
        if (colon && strcmp(colon, port) == 0) drops += atoll(tok[12]);
    }
    fclose(f);
    return drops;
}

static int is_pub(int i) { return i % per < pubs; }

static int64_t pace_send(void);

// Receives everything queued (waiting up to wait_ns for the first), sending
// what falls due in between (pace_send after every recvmmsg): a publisher's
// schedule must not wait for the generator's own receive work, or its
// packets reach the relay in bursts no real publisher sends.
static void receive_all(int64_t wait_ns) {
    struct epoll_event ev[256];
    struct timespec timeout = { .tv_sec = wait_ns / 1000000000LL, .tv_nsec = wait_ns % 1000000000LL };
    int n = epoll_pwait2(epfd, ev, 256, &timeout, NULL);
    static char bufs[RBATCH][2048];
    static char ctl[RBATCH][64];
    static struct mmsghdr m[RBATCH];
    static struct iovec io[RBATCH];
    for (int e = 0; e < n; e++) {
        int fd = ev[e].data.fd;
        for (;;) {
            for (int k = 0; k < RBATCH; k++) {
                io[k].iov_base = bufs[k]; io[k].iov_len = sizeof bufs[k];
                m[k].msg_hdr = (struct msghdr){ .msg_iov = &io[k], .msg_iovlen = 1, .msg_control = ctl[k], .msg_controllen = sizeof ctl[k] };
            }
            int r = recvmmsg(fd, m, RBATCH, MSG_DONTWAIT, NULL);
            if (r <= 0) break;
            pace_send();
            for (int k = 0; k < r; k++) {
                unsigned char *b = (unsigned char *)bufs[k];
                if (m[k].msg_len < 24 || ((b[1] & 0x7f) >= 72 && (b[1] & 0x7f) <= 79)) continue; // RTCP from the relay (RR)
                uint32_t sid; memcpy(&sid, b + 20, 4);
                if (sid != step_id) { stale++; continue; }
                received++;
                if (lat && nlat < maxlat) {
                    int64_t tx; memcpy(&tx, b + 12, 8);
                    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m[k].msg_hdr); c; c = CMSG_NXTHDR(&m[k].msg_hdr, c)) {
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
                            struct timespec ts; memcpy(&ts, CMSG_DATA(c), sizeof ts);
                            lat_tx[nlat] = tx;
                            lat[nlat++] = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - tx;
                        }
                    }
                }
            }
            if (r < RBATCH) break;
        }
    }
}

static void send_batch(int i, int count) {
    static char bufs[SBATCH][2048];
    static struct mmsghdr m[SBATCH];
    static struct iovec io[SBATCH];
    static struct sockaddr_in to;
    to.sin_family = AF_INET; to.sin_port = htons(server_port); to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int64_t tx = now_ns(CLOCK_REALTIME);
    uint32_t ssrc = htonl(ssrc_base + i);
    for (int k = 0; k < count; k++) {
        unsigned char *b = (unsigned char *)bufs[k];
        uint16_t s = seqs[i]++;
        b[0] = 0x80; b[1] = size <= 400 ? 111 : 96; b[2] = s >> 8; b[3] = s & 0xff;
        uint32_t ts = htonl((uint32_t)(tx / 11111)); memcpy(b + 4, &ts, 4);
        memcpy(b + 8, &ssrc, 4);
        memcpy(b + 12, &tx, 8);
        memcpy(b + 20, &step_id, 4);
        io[k].iov_base = b; io[k].iov_len = size;
        m[k].msg_hdr = (struct msghdr){ .msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &io[k], .msg_iovlen = 1 };
    }
    int done = 0;
    while (done < count) {
        int r = sendmmsg(fds[i], m + done, count - done, 0);
        if (r <= 0) { if (errno == EAGAIN || errno == ENOBUFS) continue; break; }
        done += r;
    }
    sent += done;
}

struct result { double rate, fwd, loss, cpu, per_cpu, behind; long long sent, expected, received; };

// A step passes when under 0.1 % of the copies expected from what was
// actually sent are lost, and the generator sent at least 90 % of its
// schedule (above that rate it measures itself, not the server).
static int passed(struct result r) { return r.loss < 0.001 && r.behind < 0.1; }

// Pacing: the generator never sends more than CATCH_UP_MS of its schedule
// at once. One core cannot always keep up with sending and receiving; a
// generator that then dumps its whole backlog (we saw 0.5 s of packets in
// one burst) overflows any relay's socket buffer, and the loss is its own.
// What it could not send in time is skipped and reported (`behind`); loss
// is computed from what was sent, and the search reports the passing step
// that forwarded the most (with the rate it actually sent). A failed step
// is run once more (one scheduling stall of the VM should not decide the
// rate).
#define CATCH_UP_MS 20

// The current step's schedule: publisher packets due at `rate` per second
// since t0, sent round-robin over the publishers.
static struct {
    int64_t t0, end; double rate;
    long long due_total, max_burst, skipped;
    int pub[65536], npub, next;
} pace;

// Sends what the schedule has made due by now (at most CATCH_UP_MS of it;
// the rest is skipped) and returns the ns until the next packet is due.
static int64_t pace_send(void) {
    if (pace.rate <= 0) return 1000000;
    int64_t t = now_ns(CLOCK_MONOTONIC);
    if (t > pace.end) return 1000000; // receive_all may run past the step's end
    long long due = (long long)((t - pace.t0) * pace.rate / 1e9);
    long long cap = (long long)(pace.rate * CATCH_UP_MS / 1000) + SBATCH;
    if (due - pace.due_total > cap) { pace.skipped += due - pace.due_total - cap; pace.due_total = due - cap; }
    if (due - pace.due_total > pace.max_burst) pace.max_burst = due - pace.due_total;
    while (pace.due_total < due) {
        int c = (int)(due - pace.due_total); if (c > burst) c = burst;
        send_batch(pace.pub[pace.next], c);
        pace.next = (pace.next + 1) % pace.npub;
        pace.due_total += c;
    }
    return pace.t0 + (int64_t)((pace.due_total + 1) * 1e9 / pace.rate) - now_ns(CLOCK_MONOTONIC);
}

// Sends at `rate` publisher packets/s for `secs`, then drains.
static struct result step(double rate, double secs) {
    step_id++;
    sent = received = stale = 0;
    double cpu0 = server_cpu();
    long long drops0 = server_socket_drops();
    pace.t0 = now_ns(CLOCK_MONOTONIC); pace.end = pace.t0 + (int64_t)(secs * 1e9); pace.rate = rate;
    pace.due_total = pace.max_burst = pace.skipped = 0;
    pace.npub = 0; pace.next = 0;
    for (int i = 0; i < total; i++) if (is_pub(i)) pace.pub[pace.npub++] = i;
    while (now_ns(CLOCK_MONOTONIC) < pace.end) {
        // Sleep until the next packet is due (at most 1 ms) unless a
        // subscriber's packet arrives first; never spin: a spinning
        // generator starves ksoftirqd on its core, and loopback delivery
        // then waits behind it (hundreds of ms of fake latency).
        int64_t wait = pace_send();
        receive_all(wait < 0 ? 0 : wait > 1000000 ? 1000000 : wait);
    }
    pace.rate = 0; // the drain sends nothing
    // Drain: until nothing (of this step or older ones) arrived for 300 ms,
    // so an overloaded step's backlog cannot leak into the next one.
    int64_t cap = now_ns(CLOCK_MONOTONIC) + 10000000000LL, idle_since = now_ns(CLOCK_MONOTONIC);
    for (;;) {
        long long before = received + stale;
        receive_all(10000000);
        int64_t t = now_ns(CLOCK_MONOTONIC);
        if (received + stale != before) idle_since = t;
        if (t - idle_since > 300000000LL || t > cap) break;
    }
    double cpu1 = server_cpu();
    long long drops = server_socket_drops() - drops0;
    struct result r;
    r.rate = rate; r.sent = sent; r.expected = sent * (per - 1); r.received = received;
    r.loss = r.expected ? 1.0 - (double)received / r.expected : 1;
    r.fwd = received / secs;
    r.cpu = cpu1 - cpu0;
    r.per_cpu = r.cpu > 0 ? received / r.cpu : 0;
    r.behind = rate > 0 ? pace.skipped / (rate * secs) : 0;
    printf("STEP rate=%.0f in_pps=%.0f fwd_pps=%.0f loss=%.5f%% server_cpu_s=%.2f fwd_per_cpu_s=%.0f server_socket_drops=%lld max_burst=%lld generator_behind=%.2f%%\n", rate, sent / secs, r.fwd, r.loss * 100, r.cpu, r.per_cpu, drops, pace.max_burst, r.behind * 100);
    fflush(stdout);
    return r;
}

static struct result search_step(double rate, double secs) {
    struct result r = step(rate, secs);
    return passed(r) ? r : step(rate, secs);
}

static int cmp64(const void *a, const void *b) { int64_t x = *(const int64_t *)a, y = *(const int64_t *)b; return x < y ? -1 : x > y; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

// Number of distinct 10 ms send-time windows holding a sample over 1 ms.
static int late_windows(void) {
    static int64_t w[1 << 16]; int nw = 0;
    for (long long k = 0; k < nlat && nw < (1 << 16); k++)
        if (lat[k] > 1000000) w[nw++] = lat_tx[k] / 10000000;
    qsort(w, nw, sizeof *w, cmp64);
    int d = 0;
    for (int k = 0; k < nw; k++) if (k == 0 || w[k] != w[k - 1]) d++;
    return d;
}

// Asks the server (sigqueue SIGUSR1) to start a residence window (0) or to
// print the one that just ended under `label`.
static void residence_signal(int label) {
    union sigval v = { .sival_int = label };
    sigqueue(server_pid, SIGUSR1, v);
}

// LAT_REPEAT latency steps at `rate` (a LATRUN line each), then more, up
// to LAT_EXTRA (default 10), until QUIET_RUNS (default 3) of them were
// quiet: at most QUIET_STEAL_MS (default 10, one USER_HZ tick) of
// hypervisor steal on the two cores together. 1 % of a 2 s run's packets
// is 20 ms, so a stolen vCPU decides the p99 of any run it hits; the quiet
// runs show the relay without that. Then NAME with the median p50/p99 of
// all runs, the p99 range, and the median p50/p99 of the quiet runs with
// their labels (the server's residence windows). Latency samples are only
// kept from the first call on.
static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && *v && atoi(v) >= 0 ? atoi(v) : fallback;
}

static double median(const double *x, int n) {
    double t[128];
    if (n <= 0) return -1;
    memcpy(t, x, sizeof(double) * n);
    qsort(t, n, sizeof(double), cmpd);
    return t[n / 2];
}

static void latency_runs(const char *name, double rate, double secs, int label_base) {
    if (!lat) {
        lat = malloc(maxlat * sizeof *lat);
        lat_tx = malloc(maxlat * sizeof *lat_tx);
    }
    int repeat = env_int("LAT_REPEAT", 5), extra = env_int("LAT_EXTRA", 10);
    int want_quiet = env_int("QUIET_RUNS", 3), quiet_steal = env_int("QUIET_STEAL_MS", 10);
    if (repeat < 1) repeat = 1;
    if (repeat + extra > 64) extra = 64 - repeat < 0 ? 0 : 64 - repeat;
    double p50s[64], p99s[64], q50[64], q99[64];
    char labels[512] = ""; int nq = 0, runs = 0;
    double fwd = 0, loss = 0, cpu = 0; long long samples = 0;
    for (int k = 0; k < repeat || (nq < want_quiet && k < repeat + extra); k++) {
        nlat = 0;
        double s0 = steal_ms(server_core), l0 = steal_ms(load_core);
        residence_signal(0);
        struct result r = step(rate, secs);
        residence_signal(label_base + k + 1);
        double s1 = steal_ms(server_core), l1 = steal_ms(load_core);
        int windows = late_windows();
        qsort(lat, nlat, sizeof *lat, cmp64);
        p50s[k] = nlat ? lat[nlat / 2] / 1000.0 : -1;
        p99s[k] = nlat ? lat[(long long)(nlat * 0.99)] / 1000.0 : -1;
        printf("LATRUN %s run=%d in_pps=%.0f loss=%.5f%% samples=%lld p50_us=%.1f p99_us=%.1f max_us=%.1f over_1ms_windows=%d steal_ms_server_core=%.0f steal_ms_load_core=%.0f\n",
               name, k + 1, rate, r.loss * 100, nlat, p50s[k], p99s[k], nlat ? lat[nlat - 1] / 1000.0 : -1, windows, s1 - s0, l1 - l0);
        fflush(stdout);
        fwd += r.fwd; cpu += r.cpu; if (r.loss > loss) loss = r.loss; samples += nlat; runs++;
        if ((s1 - s0) + (l1 - l0) <= quiet_steal) {
            q50[nq] = p50s[k]; q99[nq] = p99s[k]; nq++;
            snprintf(labels + strlen(labels), sizeof labels - strlen(labels), "%s%d", strlen(labels) ? "," : "", label_base + k + 1);
        }
    }
    double lo = p99s[0], hi = p99s[0];
    for (int k = 1; k < runs; k++) { if (p99s[k] < lo) lo = p99s[k]; if (p99s[k] > hi) hi = p99s[k]; }
    // server_busy: the server's CPU seconds per second over the runs (1 = one core).
    printf("%s in_pps=%.0f fwd_pps=%.0f server_busy=%.2f max_loss=%.5f%% runs=%d samples=%lld p50_us=%.1f p99_us=%.1f p99_min_us=%.1f p99_max_us=%.1f quiet_runs=%d quiet_p50_us=%.1f quiet_p99_us=%.1f quiet_labels=%s\n",
           name, rate, fwd / runs, cpu / (runs * secs), loss * 100, runs, samples, median(p50s, runs), median(p99s, runs), lo, hi, nq, median(q50, nq), median(q99, nq), nq ? labels : "-");
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: %s SERVER_PORT SERVER_PID ROOMS PARTICIPANTS PUBLISHERS CLIENT_BASE SSRC_BASE SIZE [STEP_SECONDS] [START_RATE]\n", argv[0]);
        return 2;
    }
    server_port = atoi(argv[1]); server_pid = atoi(argv[2]); rooms = atoi(argv[3]); per = atoi(argv[4]);
    pubs = atoi(argv[5]); base = atoi(argv[6]); ssrc_base = (uint32_t)atol(argv[7]); size = atoi(argv[8]);
    double secs = argc > 9 ? atof(argv[9]) : 2.0;
    double start = argc > 10 ? atof(argv[10]) : 5000;
    if (size < 24 || size > 1400) { fprintf(stderr, "size must be 24..1400\n"); return 2; }
    if (getenv("BURST")) burst = atoi(getenv("BURST")) < 1 ? 1 : atoi(getenv("BURST")) > SBATCH ? SBATCH : atoi(getenv("BURST"));
    if (getenv("SERVER_CORE")) server_core = atoi(getenv("SERVER_CORE"));
    if (getenv("LOAD_CORE")) load_core = atoi(getenv("LOAD_CORE"));
    total = rooms * per;
    fds = calloc(total, sizeof *fds);
    seqs = calloc(total, sizeof *seqs);
    epfd = epoll_create1(0);
    for (int i = 0; i < total; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int buf = 8 << 20, one = 1;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(base + i), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
        fds[i] = fd;
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }

    if (argc > 11 && strcmp(argv[11], "fixed") == 0) {
        struct result f = step(start, secs);
        printf("FIXED in_pps=%.0f sent=%lld received=%lld loss=%.5f%%\n", start, f.sent, f.received, f.loss * 100);
        return 0;
    }

    if (argc > 11 && strcmp(argv[11], "latency") == 0) {
        step(start / 2, 0.5);
        latency_runs("LATENCY", start, secs, 0);
        return 0;
    }

    // Warm-up (caches, first-packet paths), not reported.
    step(start / 2, 0.5);

    // Highest rate with < 0.1 % loss: double until it fails, then bisect.
    struct result best = {0}, r;
    double good = 0, bad = 0, rate = start;
    for (;;) {
        r = search_step(rate, secs);
        if (passed(r)) { good = rate; if (r.fwd > best.fwd) best = r; rate *= 2; if (rate > 4e6) break; }
        else { bad = rate; break; }
    }
    for (int k = 0; k < 4 && bad > 0 && good > 0; k++) {
        double mid = (good + bad) / 2;
        r = search_step(mid, secs);
        if (passed(r)) { good = mid; if (r.fwd > best.fwd) best = r; } else bad = mid;
    }
    double sent_pps = best.sent / secs;
    printf("RESULT in_pps=%.0f fwd_pps=%.0f loss=%.5f%% server_cpu_s=%.2f fwd_per_cpu_s=%.0f\n",
           sent_pps, best.fwd, best.loss * 100, best.cpu, best.per_cpu);

    // Latency at half the loss-free rate, then at a light load (500
    // publisher packets/s), where queueing matters least.
    latency_runs("LATENCY", sent_pps > 0 ? sent_pps / 2 : start / 2, secs, 0);
    latency_runs("LATENCY_LIGHT", 500, secs, 100);
    return 0;
}
