/*
 * loadgen: a WebSocket + Phoenix V2 JSON load generator for greenphx benchmarks.
 *
 * Build:   make -C bench/loadgen
 *    or:   gcc -O2 -std=gnu11 -Wall -Wextra -o bench/loadgen/loadgen bench/loadgen/loadgen.c
 *
 * Single-threaded, one epoll instance (edge-triggered, each socket registered once for
 * both directions: no epoll_ctl per write), non-blocking sockets, TCP_NODELAY, no
 * dependencies beyond libc. It reports its own CPU time (getrusage) so a harness can
 * show it had headroom. Loopback only: --host must be 127.0.0.1 or localhost. Every run
 * is bounded (counts from the command line; --phase-timeout-s for connect+join, 5 s of
 * draining, --max-s for the whole run) and stops by itself.
 *
 * Usage:
 *   loadgen --port P [--host 127.0.0.1] [--path /socket/websocket?vsn=2.0.0]
 *           [--max-s 900] [--phase-timeout-s 120] [--heartbeat-s 30]
 *           [--payload-bytes 0] [--kernel-ports] [--src-addr 127.0.0.1] [--quiet]
 *           SCENARIO [options]
 *
 *   connect  --conns N [--topic bench:s1] [--concurrency 200] [--hold-s 0]
 *            [--broadcast-reach | --await-broadcast]
 *
 * --src-addr binds the connections to another loopback address (127.0.0.0/8): one
 * address has ~28k ephemeral ports, so 100k connections need several generators with
 * different source addresses. connect reports the heartbeats' round trips during the
 * hold (heartbeat_{p50,p99,max}_ms). --await-broadcast: another process sends one
 * broadcast (seq 0, "t" = its CLOCK_MONOTONIC send time, shared by every process on the
 * machine) during the hold; the generator reports how many of its connections got it and
 * the latest arrival after "t" (broadcast_reach_ms), and ends the hold early once all have.
 *   fanout   --subs N [--topic bench:fan] [--rate 0] [--window 50]
 *            [--duration 10] [--warmup 2] [--max-outstanding 10000] [--concurrency 200]
 *   pingpong --clients K [--duration 10] [--warmup 2] [--concurrency 200]
 *   churn    --cycles C [--concurrency 50] [--topic bench:churn]
 *
 * --concurrency bounds the handshakes in flight (TCP connect + HTTP upgrade); for churn,
 * the cycles in flight. connect prints "HOLDING" on stderr (flushed) when the hold
 * starts: every connection joined (or failed) and the broadcast, if any, measured.
 * fanout: N subscribers and one publisher (joined last) on the topic; --rate 0 keeps
 * --window unreplied "broadcast" pushes outstanding, --rate R paces R pushes/s (at most
 * --max-outstanding unreplied; the excess is counted in pushes_skipped). Loss is exact:
 * push seq s must reach every joined subscriber; after the window the generator waits
 * up to 5 s for acks and stragglers, then counts the missing (subscriber, seq) pairs of
 * the window's acknowledged pushes.
 *
 * Prints exactly one JSON object on stdout at the end (progress goes to stderr).
 * Every result has cpu_user_s, cpu_sys_s, wall_s, cpu_share ((user+sys)/wall), an
 * "errors" object, listen_overflows (the TcpExt ListenOverflows delta of this network
 * namespace during the run: the server's accept queue overflowed, SYNs were dropped
 * and retried 1 s later) and the setup times handshake_{p50,p99,max}_ms/_over_1s
 * (connect -> 101) and join_{p50,p99,max}_ms/_over_1s (101 -> join reply). fanout and
 * pingpong add window_cpu_user_s, window_cpu_sys_s, window_wall_s, window_cpu_share:
 * the same for the measurement window alone. Latencies (p50/p90/p99/p999/max/mean_ms)
 * come from a uniform reservoir of 200,000 samples over every delivery/reply of the
 * window.
 *
 * Exit status: 0 when the run completed (even with failed connections: see the JSON),
 * 1 when it was aborted (--max-s, SIGINT/SIGTERM, the publisher lost, nobody joined),
 * 2 on a usage error. The JSON is printed in every case but a usage error.
 *
 * Protocol: RFC 6455 client (masked frames, ping->pong, close handshake, fragmented
 * messages reassembled, Sec-WebSocket-Accept checked) carrying Phoenix's V2 JSON
 * serializer: [join_ref, ref, topic, event, payload]. join_ref is "1" on every
 * connection; refs are decimal strings. Every push payload is
 * {"t":<send time, us of CLOCK_MONOTONIC>,"s":<seq>} (+ ,"p":"xxx..." with
 * --payload-bytes); latencies come from that "t", loss accounting from that "s".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ utils */

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng64(void) { /* xorshift64* */
    uint64_t x = rng_state;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q && n) { fprintf(stderr, "loadgen: out of memory\n"); exit(1); }
    return q;
}

/* --------------------------------------------------------- SHA-1, base64 */

typedef struct { uint32_t h[5]; uint64_t len; uint8_t buf[64]; size_t n; } sha1_ctx;

static uint32_t rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static void sha1_block(sha1_ctx *c, const uint8_t *p) {
    uint32_t w[80], a, b, d, e, f, k, t, cc;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3]; e = c->h[4];
    for (int i = 0; i < 80; i++) {
        if (i < 20) { f = (b & cc) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ cc ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8F1BBCDC; }
        else { f = b ^ cc ^ d; k = 0xCA62C1D6; }
        t = rol(a, 5) + f + e + k + w[i];
        e = d; d = cc; cc = rol(b, 30); b = a; a = t;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20]) {
    sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    const uint8_t *p = data;
    c.len = len;
    while (len >= 64) { sha1_block(&c, p); p += 64; len -= 64; }
    memcpy(c.buf, p, len); c.n = len;
    c.buf[c.n++] = 0x80;
    if (c.n > 56) { memset(c.buf + c.n, 0, 64 - c.n); sha1_block(&c, c.buf); c.n = 0; }
    memset(c.buf + c.n, 0, 56 - c.n);
    uint64_t bits = c.len * 8;
    for (int i = 0; i < 8; i++) c.buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_block(&c, c.buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = c.h[i] >> 24; out[4 * i + 1] = c.h[i] >> 16;
        out[4 * i + 2] = c.h[i] >> 8; out[4 * i + 3] = c.h[i];
    }
}

static void b64(const uint8_t *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = t[(v >> 6) & 63]; out[o++] = t[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = '='; out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = t[(v >> 6) & 63]; out[o++] = '=';
    }
    out[o] = 0;
}

/* ---------------------------------------------------------------- latency */

#define RES_CAP 200000
typedef struct {       /* a bounded uniform sample (reservoir, algorithm R) of microseconds */
    uint32_t *s;
    uint64_t seen;
    double sum_us;
    uint32_t max_us;
    uint64_t over_1s;  /* samples >= 1 s (a SYN retransmit shows up here) */
} resv;
static resv lat, hs_t, join_t;  /* push/ping latency; connect->101; 101->join reply */

static void resv_add(resv *r, int64_t us) {
    if (us < 0) us = 0;
    if (us > 0xFFFFFFFF) us = 0xFFFFFFFF;
    uint32_t v = (uint32_t)us;
    if (!r->s) r->s = xrealloc(NULL, RES_CAP * sizeof(uint32_t));
    r->sum_us += v;
    if (v > r->max_us) r->max_us = v;
    if (v >= 1000000) r->over_1s++;
    if (r->seen < RES_CAP) r->s[r->seen] = v;
    else { uint64_t j = rng64() % (r->seen + 1); if (j < RES_CAP) r->s[j] = v; }
    r->seen++;
}
static void lat_add(int64_t us) { resv_add(&lat, us); }
static resv hb_t;  /* heartbeat round trips (connect, during the hold) */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double resv_pct(resv *r, double q) {  /* nearest rank, on the sorted reservoir; ms */
    uint64_t n = r->seen < RES_CAP ? r->seen : RES_CAP;
    if (!n) return -1;
    uint64_t k = (uint64_t)(q * (double)n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return r->s[k - 1] / 1000.0;
}

/* ---------------------------------------------------------------- options */

enum { SC_CONNECT, SC_FANOUT, SC_PINGPONG, SC_CHURN };
static const char *sc_names[] = {"connect", "fanout", "pingpong", "churn"};

static struct {
    int port;
    const char *host;
    const char *path;
    int scenario;
    long n;             /* conns / subs / clients / cycles */
    const char *topic;
    int concurrency;
    double hold_s;
    int broadcast_reach;
    int await_broadcast;
    double rate;
    int window;
    double duration, warmup;
    double max_s;
    double phase_timeout_s;
    double heartbeat_s;
    int payload_bytes;
    int quiet;
    long max_outstanding;
} opt = {
    .port = 0, .host = "127.0.0.1", .path = "/socket/websocket?vsn=2.0.0",
    .scenario = -1, .n = -1, .topic = NULL, .concurrency = -1, .hold_s = 0,
    .broadcast_reach = 0, .rate = 0, .window = 50, .duration = 10, .warmup = 2,
    .max_s = 900, .phase_timeout_s = 120, .heartbeat_s = 30, .payload_bytes = 0,
    .quiet = 0, .max_outstanding = 10000,
};

/* ------------------------------------------------------------ connections */

enum { CS_FREE, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_DONE };
enum { PH_NONE, PH_JOINING, PH_JOINED, PH_LEAVING, PH_CLOSING };

typedef struct conn {
    int fd;
    int idx;
    uint8_t state, phase, sent_close, got_close, is_pub, got_bcast, counted_hs;
    uint8_t frag_op;
    char *in;  uint32_t in_len, in_cap;      /* unparsed input (partial frames) */
    char *out; uint32_t out_len, out_off, out_cap; /* unsent output */
    char *frag; uint32_t frag_len, frag_cap; /* fragmented message being reassembled */
    char key[32];
    int64_t t_start;     /* when this connection (or churn cycle) started */
    int64_t t_sent;      /* when the outstanding request was sent */
    int64_t t_hb;        /* last heartbeat */
    int64_t t_open;      /* when the 101 came */
    uint64_t next_ref;
    uint64_t wait_ref;   /* the ref whose reply we wait for (0: none) */
    uint64_t last_seq;   /* fanout: highest seq received */
    uint64_t recv;       /* fanout: deliveries received */
    int64_t t_hb_sent;   /* when the outstanding heartbeat was sent (0: none) */
} conn;

static int g_ep = -1;
static conn *g_conns;
static long g_nconns;
static struct sockaddr_in g_addr;
static char g_hostport[64];
static int64_t g_t0;            /* program start */
static volatile sig_atomic_t g_stop;
static int g_aborted;
static const char *g_abort_reason = "";

static char g_rbuf[1 << 18];
static char *g_wbuf; static size_t g_wcap;
static char g_msg[(1 << 20) + 4096];

/* error counters */
static struct {
    long connect, handshake, join, closed, timeout, protocol, write, push_error, bogus;
} err;

/* live counters */
static long g_inflight_hs, g_connected, g_joined, g_failed, g_open;

static void conn_fail(conn *c, long *counter);
static void on_open(conn *c, int64_t now);
static void on_text(conn *c, char *p, size_t n, int64_t now);
static void on_closed(conn *c, int clean, int64_t now);

static void conn_release(conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        g_open--;
    }
    if (c->counted_hs) { c->counted_hs = 0; g_inflight_hs--; }
    c->in_len = c->out_len = c->out_off = c->frag_len = 0;
    if (c->in_cap > 65536) { free(c->in); c->in = NULL; c->in_cap = 0; }
    if (c->out_cap > 65536) { free(c->out); c->out = NULL; c->out_cap = 0; }
    if (c->frag_cap > 65536) { free(c->frag); c->frag = NULL; c->frag_cap = 0; }
    c->state = CS_DONE;
}

static void buf_append(char **b, uint32_t *len, uint32_t *cap, const char *p, size_t n) {
    if ((size_t)*len + n > *cap) {
        size_t nc = *cap ? *cap : 512;
        while (nc < (size_t)*len + n) nc *= 2;
        if (nc > 0xFFFFFFFFu) { fprintf(stderr, "loadgen: buffer overflow\n"); exit(1); }
        *b = xrealloc(*b, nc);
        *cap = (uint32_t)nc;
    }
    memcpy(*b + *len, p, n);
    *len += (uint32_t)n;
}

/* Send bytes; what the kernel does not take now is queued and EPOLLOUT armed. */
static int send_raw(conn *c, const char *p, size_t n) {
    if (c->fd < 0) return -1;
    if (c->out_len == 0 && c->state != CS_CONNECTING) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) { conn_fail(c, &err.write); return -1; }
            w = 0;
        }
        if ((size_t)w == n) return 0;
        p += w; n -= w;
    }
    if (c->out_off && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    /* Edge-triggered: the kernel flagged the socket as out of space, so an EPOLLOUT
       edge follows once it drains and flush_out() sends the rest. */
    buf_append(&c->out, &c->out_len, &c->out_cap, p, n);
    return 0;
}

static void flush_out(conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_fail(c, &err.write);
            return;
        }
        c->out_off += (uint32_t)w;
    }
    c->out_off = c->out_len = 0;
}

/* A masked client frame. */
static int ws_send(conn *c, int opcode, const char *p, size_t n) {
    size_t need = n + 14;
    if (need > g_wcap) { g_wcap = need * 2; g_wbuf = xrealloc(g_wbuf, g_wcap); }
    uint8_t *h = (uint8_t *)g_wbuf;
    size_t hl;
    h[0] = 0x80 | (opcode & 0x0f);
    if (n < 126) { h[1] = 0x80 | (uint8_t)n; hl = 2; }
    else if (n < 65536) { h[1] = 0x80 | 126; h[2] = n >> 8; h[3] = n & 0xff; hl = 4; }
    else { h[1] = 0x80 | 127; for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i)); hl = 10; }
    uint8_t mk[4];
    uint32_t r = (uint32_t)rng64();
    memcpy(mk, &r, 4);
    memcpy(h + hl, mk, 4);
    hl += 4;
    uint8_t *dst = h + hl;
    const uint8_t *src = (const uint8_t *)p;
    size_t i = 0;
    uint64_t m8; uint8_t mm[8] = {mk[0], mk[1], mk[2], mk[3], mk[0], mk[1], mk[2], mk[3]};
    memcpy(&m8, mm, 8);
    for (; i + 8 <= n; i += 8) { uint64_t v; memcpy(&v, src + i, 8); v ^= m8; memcpy(dst + i, &v, 8); }
    for (; i < n; i++) dst[i] = src[i] ^ mk[i & 3];
    return send_raw(c, g_wbuf, hl + n);
}

static void ws_close(conn *c, int code) {
    if (c->sent_close || c->fd < 0) return;
    char b[2] = {(char)(code >> 8), (char)(code & 0xff)};
    c->sent_close = 1;
    ws_send(c, 8, b, 2);
    if (c->state == CS_OPEN) c->state = CS_CLOSING;
}

static void conn_fail(conn *c, long *counter) {
    if (c->state == CS_DONE || c->state == CS_FREE) return;
    if (counter) (*counter)++;
    conn_release(c);
    on_closed(c, 0, now_us());
}

/* Source ports. With tens of thousands of connections from 127.0.0.1 to one server
 * port, the kernel's ephemeral-port search in connect() (__inet_hash_connect) grows
 * with the ports in use and came to dominate a 19k-connection run (~2k connects/s
 * of pure kernel search). So the generator walks the ephemeral range itself and
 * bind()s each socket to the next free port (SO_REUSEADDR, so its own TIME_WAIT
 * ports are reusable); connect() then has nothing to search. --kernel-ports turns
 * this off; any failure falls back to the kernel's choice. */
static int g_port_lo = 32768, g_port_hi = 60999, g_port_cur;
static struct in_addr g_src_addr = {.s_addr = 0};  /* 0: 127.0.0.1 (INADDR_LOOPBACK) */
static int g_kernel_ports;
static long g_port_fallbacks;

static void ports_init(void) {
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        int lo, hi;
        if (fscanf(f, "%d %d", &lo, &hi) == 2 && lo > 0 && hi <= 65535 && hi - lo >= 100) { g_port_lo = lo; g_port_hi = hi; }
        fclose(f);
    }
    g_port_cur = g_port_lo + (int)(rng64() % (uint64_t)(g_port_hi - g_port_lo + 1));
}

/* A non-blocking socket with connect() under way to the server; -1 on failure. */
static int open_connecting_socket(void) {
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int bound = 0;
        if (!g_kernel_ports && attempt < 7) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            for (int tries = 0; tries < 256 && !bound; tries++) {
                int port = g_port_cur++;
                if (g_port_cur > g_port_hi) g_port_cur = g_port_lo;
                if (port == opt.port) continue;
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                        .sin_addr.s_addr = g_src_addr.s_addr ? g_src_addr.s_addr : htonl(INADDR_LOOPBACK)};
                if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0) bound = 1;
                else if (errno != EADDRINUSE) break;
            }
            if (!bound) {  /* let the kernel choose: a fresh socket, without SO_REUSEADDR */
                g_port_fallbacks++;
                close(fd);
                attempt = 6;
                continue;
            }
        }
        if (!bound && g_src_addr.s_addr) {  /* the kernel picks the port, on our source address */
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr = g_src_addr};
            if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { int e = errno; close(fd); errno = e; return -1; }
        }
        if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) == 0 || errno == EINPROGRESS) return fd;
        int e = errno;
        close(fd);
        if (!(bound && (e == EADDRNOTAVAIL || e == EADDRINUSE))) { errno = e; return -1; }
        /* that 4-tuple is taken (our own port reused too early): try the next port */
    }
    return -1;
}

static void conn_start(conn *c, int64_t now) {
    c->sent_close = c->got_close = c->got_bcast = 0;
    c->in_len = c->out_len = c->out_off = c->frag_len = 0;
    c->phase = PH_NONE;
    c->next_ref = 1;
    c->wait_ref = 0;
    c->last_seq = 0;
    c->t_start = now;
    c->t_hb = now;
    c->state = CS_CONNECTING;
    g_inflight_hs++;
    c->counted_hs = 1;
    c->fd = open_connecting_socket();
    if (c->fd < 0) { conn_fail(c, &err.connect); return; }
    g_open++;
    /* edge-triggered, both directions, registered once: no epoll_ctl per write.
       The handshake request goes out on the first EPOLLOUT (connected). */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) { conn_fail(c, &err.connect); return; }
}

static void send_handshake(conn *c) {
    uint8_t raw[16];
    uint64_t a = rng64(), b = rng64();
    memcpy(raw, &a, 8); memcpy(raw + 8, &b, 8);
    b64(raw, 16, c->key);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, g_hostport, c->key);
    c->state = CS_HANDSHAKE;
    send_raw(c, req, (size_t)n);
}

/* Returns bytes consumed from p (the rest stays for later), or -1 if c is gone. */
static long ws_parse(conn *c, char *p, size_t n, int64_t now) {
    size_t off = 0;
    while (c->fd >= 0 && n - off >= 2) {
        uint8_t *h = (uint8_t *)p + off;
        int fin = h[0] & 0x80, op = h[0] & 0x0f;
        if (h[0] & 0x70) { conn_fail(c, &err.protocol); return -1; } /* RSV bits: no extensions */
        if (h[1] & 0x80) { conn_fail(c, &err.protocol); return -1; } /* servers never mask */
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (n - off < 4) break;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (n - off < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (len > (64u << 20)) { conn_fail(c, &err.protocol); return -1; }
        if (n - off < hl + len) break;
        char *pl = p + off + hl;
        off += hl + len;
        switch (op) {
        case 1: case 2:
            if (c->frag_len || c->frag_op) { conn_fail(c, &err.protocol); return -1; }
            if (fin) { if (op == 1) on_text(c, pl, len, now); }
            else { c->frag_op = (uint8_t)op; buf_append(&c->frag, &c->frag_len, &c->frag_cap, pl, len); }
            break;
        case 0:
            if (!c->frag_op) { conn_fail(c, &err.protocol); return -1; }
            buf_append(&c->frag, &c->frag_len, &c->frag_cap, pl, len);
            if (fin) {
                int fop = c->frag_op;
                uint32_t fl = c->frag_len;
                c->frag_op = 0;
                c->frag_len = 0;
                if (fop == 1) on_text(c, c->frag, fl, now);
            }
            break;
        case 8:
            c->got_close = 1;
            if (!c->sent_close) {
                int code = len >= 2 ? ((uint8_t)pl[0] << 8 | (uint8_t)pl[1]) : 1000;
                ws_close(c, code);
            }
            conn_release(c);
            on_closed(c, 1, now);
            return -1;
        case 9:
            if (len > 125 || !fin) { conn_fail(c, &err.protocol); return -1; }
            ws_send(c, 10, pl, len);
            break;
        case 10:
            break;
        default:
            conn_fail(c, &err.protocol);
            return -1;
        }
    }
    return c->fd >= 0 ? (long)off : -1;
}

/* Handshake response: returns bytes consumed (0 = need more), -1 if c is gone. */
static long hs_parse(conn *c, char *p, size_t n, int64_t now) {
    char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > 16384) { conn_fail(c, &err.handshake); return -1; }
        return 0;
    }
    size_t hlen = (size_t)(end - p) + 4;
    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) { conn_fail(c, &err.handshake); return -1; }
    /* Check Sec-WebSocket-Accept. */
    char want[64];
    {
        char cat[128];
        int cl = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
        uint8_t dg[20];
        sha1(cat, (size_t)cl, dg);
        b64(dg, 20, want);
    }
    int ok = 0;
    for (char *l = p; l < end;) {
        char *nl = memmem(l, (size_t)(end - l) + 2, "\r\n", 2);
        if (!nl) break;
        if (nl - l > 21 && strncasecmp(l, "Sec-WebSocket-Accept:", 21) == 0) {
            char *v = l + 21;
            while (v < nl && (*v == ' ' || *v == '\t')) v++;
            char *ve = nl;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if ((size_t)(ve - v) == strlen(want) && memcmp(v, want, (size_t)(ve - v)) == 0) ok = 1;
        }
        l = nl + 2;
    }
    if (!ok) { conn_fail(c, &err.handshake); return -1; }
    c->state = CS_OPEN;
    if (c->counted_hs) { c->counted_hs = 0; g_inflight_hs--; }
    g_connected++;
    c->t_open = now;
    resv_add(&hs_t, now - c->t_start);
    on_open(c, now);
    return c->fd >= 0 ? (long)hlen : -1;
}

static void process_input(conn *c, char *p, size_t n, int64_t now) {
    if (c->in_len) {  /* leftovers: append and parse from the connection's buffer */
        buf_append(&c->in, &c->in_len, &c->in_cap, p, n);
        p = c->in; n = c->in_len;
    }
    size_t off = 0;
    if (c->state == CS_HANDSHAKE) {
        long k = hs_parse(c, p, n, now);
        if (k < 0) return;
        if (k == 0) {
            if (!c->in_len) buf_append(&c->in, &c->in_len, &c->in_cap, p, n);
            return;
        }
        off = (size_t)k;
    }
    if (c->state == CS_OPEN || c->state == CS_CLOSING) {
        long k = ws_parse(c, p + off, n - off, now);
        if (k < 0) return;
        off += (size_t)k;
    }
    if (c->fd < 0) return;
    size_t rest = n - off;
    if (p == c->in) {
        if (rest && off) memmove(c->in, c->in + off, rest);
        c->in_len = (uint32_t)rest;
    } else if (rest) {
        buf_append(&c->in, &c->in_len, &c->in_cap, p + off, rest);
    }
}

static void on_event(conn *c, uint32_t ev) {
    if (c->fd < 0) return;
    if (c->state == CS_CONNECTING) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            int e = 0; socklen_t sl = sizeof e;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &sl);
            if (e || (ev & (EPOLLERR | EPOLLHUP))) { conn_fail(c, &err.connect); return; }
            send_handshake(c);
        }
        return;
    }
    if ((ev & EPOLLOUT) && c->out_len) { flush_out(c); if (c->fd < 0) return; }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        /* Edge-triggered: a short read means the receive queue was empty at that moment
           (new data raises a new edge), unless the peer's FIN came with this edge: then
           read on until recv() says 0. */
        int fin = (ev & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0;
        for (;;) {
            ssize_t r = recv(c->fd, g_rbuf, sizeof g_rbuf, 0);
            if (r > 0) {
                process_input(c, g_rbuf, (size_t)r, now_us());
                if (c->fd < 0) return;
                if ((size_t)r < sizeof g_rbuf && !fin) return;
                continue;
            }
            if (r == 0) { /* TCP close */
                conn_release(c);
                on_closed(c, c->sent_close, now_us());
                return;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            conn_fail(c, &err.closed);
            return;
        }
    }
}

/* ------------------------------------------------------- phoenix messages */

typedef struct {
    const char *jr; int jr_len;     /* -1: null */
    const char *ref; int ref_len;
    const char *topic; int topic_len;
    const char *event; int event_len;
    const char *payload; int payload_len;
} pmsg;

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* A JSON string (no unescaping) or null. */
static const char *p_strornull(const char *p, const char *e, const char **s, int *len) {
    p = skip_ws(p, e);
    if (p + 4 <= e && memcmp(p, "null", 4) == 0) { *s = NULL; *len = -1; return p + 4; }
    if (p >= e || *p != '"') return NULL;
    const char *q = ++p;
    while (q < e && *q != '"') { if (*q == '\\') q++; q++; }
    if (q >= e) return NULL;
    *s = p; *len = (int)(q - p);
    return q + 1;
}

static int p_parse(const char *p, size_t n, pmsg *m) {
    const char *e = p + n;
    p = skip_ws(p, e);
    if (p >= e || *p++ != '[') return -1;
    const char **fs[4] = {&m->jr, &m->ref, &m->topic, &m->event};
    int *ls[4] = {&m->jr_len, &m->ref_len, &m->topic_len, &m->event_len};
    for (int i = 0; i < 4; i++) {
        p = p_strornull(p, e, fs[i], ls[i]);
        if (!p) return -1;
        p = skip_ws(p, e);
        if (p >= e || *p++ != ',') return -1;
    }
    p = skip_ws(p, e);
    while (e > p && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t')) e--;
    if (e <= p || e[-1] != ']') return -1;
    m->payload = p;
    m->payload_len = (int)(e - 1 - p);
    return 0;
}

static int p_eq(const char *s, int len, const char *lit) {
    size_t l = strlen(lit);
    return len == (int)l && memcmp(s, lit, l) == 0;
}

static uint64_t p_u64(const char *s, int len) {
    uint64_t v = 0;
    if (len <= 0) return 0;
    for (int i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

/* Integer value of key "k" (a one-letter key) in a flat-ish JSON object: -1 if none. */
static int64_t p_key_int(const char *p, int n, char k) {
    const char *e = p + n;
    char pat[3] = {'"', k, '"'};
    while (p < e) {
        const char *q = memmem(p, (size_t)(e - p), pat, 3);
        if (!q) return -1;
        q += 3;
        const char *r = skip_ws(q, e);
        if (r < e && *r == ':') {
            r = skip_ws(r + 1, e);
            int64_t v = 0; int any = 0;
            while (r < e && *r >= '0' && *r <= '9') { v = v * 10 + (*r - '0'); r++; any = 1; }
            if (any) return v;
        }
        p = q;
    }
    return -1;
}

/* 1 if the reply payload says "status":"ok", 0 otherwise. */
static int p_status_ok(const char *p, int n) {
    const char *e = p + n;
    const char *q = memmem(p, (size_t)n, "\"status\"", 8);
    if (!q) return 0;
    q = skip_ws(q + 8, e);
    if (q >= e || *q != ':') return 0;
    q = skip_ws(q + 1, e);
    return e - q >= 4 && memcmp(q, "\"ok\"", 4) == 0;
}

static char g_pad[(1 << 20) + 16];  /* ,"p":"xxx..." when --payload-bytes > 0 */

static int send_push(conn *c, const char *topic, const char *event, uint64_t ref, const char *payload) {
    int n = snprintf(g_msg, sizeof g_msg, "[\"1\",\"%llu\",\"%s\",\"%s\",%s]",
                     (unsigned long long)ref, topic, event, payload);
    if (n < 0 || (size_t)n >= sizeof g_msg) { fprintf(stderr, "loadgen: message too long\n"); exit(1); }
    return ws_send(c, 1, g_msg, (size_t)n);
}

static int send_stamped(conn *c, const char *topic, const char *event, uint64_t ref, uint64_t seq, int64_t t) {
    int n = snprintf(g_msg, sizeof g_msg, "[\"1\",\"%llu\",\"%s\",\"%s\",{\"t\":%lld,\"s\":%llu%s}]",
                     (unsigned long long)ref, topic, event, (long long)t, (unsigned long long)seq, g_pad);
    if (n < 0 || (size_t)n >= sizeof g_msg) { fprintf(stderr, "loadgen: message too long\n"); exit(1); }
    return ws_send(c, 1, g_msg, (size_t)n);
}

static void send_join(conn *c, const char *topic) {
    c->phase = PH_JOINING;
    c->wait_ref = c->next_ref++;
    c->t_sent = now_us();
    int n = snprintf(g_msg, sizeof g_msg, "[\"1\",\"%llu\",\"%s\",\"phx_join\",{}]",
                     (unsigned long long)c->wait_ref, topic);
    ws_send(c, 1, g_msg, (size_t)n);
}

static void send_heartbeat(conn *c) {
    static const char hb[] = "[null,\"0\",\"phoenix\",\"heartbeat\",{}]";
    c->t_hb_sent = now_us();
    ws_send(c, 1, hb, sizeof hb - 1);
}

/* ----------------------------------------------------------- JSON output */

static char g_out[16384];
static size_t g_outn;
static void jraw(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(g_out + g_outn, sizeof g_out - g_outn, fmt, ap);
    va_end(ap);
    if (k > 0) g_outn += (size_t)k;
    if (g_outn >= sizeof g_out) g_outn = sizeof g_out - 1;
}
static void jsep(void) { if (g_outn > 1) jraw(", "); }
static void jint(const char *k, long long v) { jsep(); jraw("\"%s\": %lld", k, v); }
static void jdbl(const char *k, double v) {
    jsep();
    if (v != v || v < -1e300 || v > 1e300) jraw("\"%s\": null", k);
    else if (v >= 1e5 || v <= -1e5) jraw("\"%s\": %.1f", k, v);
    else jraw("\"%s\": %.6g", k, v);
}
static void jdblp(const char *k, double v, int prec) { jsep(); jraw("\"%s\": %.*f", k, prec, v); }
static void jstr(const char *k, const char *v) {
    jsep();
    jraw("\"%s\": \"", k);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') jraw("\\%c", *p);
        else if ((unsigned char)*p < 0x20) jraw("\\u%04x", *p);
        else jraw("%c", *p);
    }
    jraw("\"");
}
static void jnull(const char *k) { jsep(); jraw("\"%s\": null", k); }

static double tv_s(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }
typedef struct { double u, s; int64_t t; } cpu_mark;
static cpu_mark cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    cpu_mark m = {tv_s(ru.ru_utime), tv_s(ru.ru_stime), now_us()};
    return m;
}

static void emit_resv(resv *r, const char *prefix, int full) {
    char k[64];
#define K(x) (snprintf(k, sizeof k, "%s%s", prefix, x), k)
    if (r->seen) {
        qsort(r->s, r->seen < RES_CAP ? r->seen : RES_CAP, sizeof(uint32_t), cmp_u32);
        jdblp(K("p50_ms"), resv_pct(r, 0.50), 3);
        if (full) jdblp(K("p90_ms"), resv_pct(r, 0.90), 3);
        jdblp(K("p99_ms"), resv_pct(r, 0.99), 3);
        if (full) jdblp(K("p999_ms"), resv_pct(r, 0.999), 3);
        jdblp(K("max_ms"), r->max_us / 1000.0, 3);
        if (full) jdblp(K("mean_ms"), r->sum_us / r->seen / 1000.0, 3);
    } else {
        jnull(K("p50_ms")); if (full) jnull(K("p90_ms"));
        jnull(K("p99_ms")); if (full) jnull(K("p999_ms"));
        jnull(K("max_ms")); if (full) jnull(K("mean_ms"));
    }
    if (!full) jint(K("over_1s"), (long long)r->over_1s);
#undef K
}

static void emit_latency(void) {
    emit_resv(&lat, "", 1);
    jint("latency_samples", (long long)lat.seen);
    jint("latency_reservoir", (long long)(lat.seen < RES_CAP ? lat.seen : RES_CAP));
}

/* connect->101 and 101->join-reply times: a listen backlog overflowing (SYNs dropped,
   retransmitted after 1 s) shows as handshake_over_1s > 0 */
static void emit_setup_times(void) {
    emit_resv(&hs_t, "handshake_", 0);
    emit_resv(&join_t, "join_", 0);
}

/* -------------------------------------------------------------- scenarios */

static int64_t T_phase_start, T_first_connect, T_last_join;
static long g_started;          /* connections/cycles started */
static long g_target;           /* how many to start */
static char **g_topics;         /* pingpong: per-connection topic */

/* connect */
static int64_t T_bcast_sent, T_bcast_done;
static long g_reached, g_dropped_hold, g_closed_clean;
static int64_t g_reach_max_us;  /* --await-broadcast: latest arrival after the sender's "t" */
static int g_in_hold, g_in_close;

/* fanout */
static long g_subs;             /* subscribers (the publisher is g_conns[g_subs]) */
static long g_subs_joined;
static uint32_t *f_recv;        /* per seq: subscribers that received it */
static uint8_t *f_acked;        /* per seq: 1 acked ok, 2 error */
static size_t f_cap;
static uint64_t f_sent, f_acked_n, f_outstanding, f_skipped;
static uint64_t f_win_lo, f_win_hi;   /* window seqs: [lo, hi) */
static uint64_t f_recv_total, f_win_deliv, f_pub_self, f_reordered, f_win_acks, f_pub_acked_err;
static int64_t T_run, T_win_start, T_win_end, T_drain_end;
static int g_run_phase;         /* 0 joining, 1 running, 2 draining, 3 done */
static long g_subs_dropped;

/* pingpong */
static uint64_t p_replies_win, p_replies_total, p_errors;

/* churn */
static long ch_done, ch_failed;
static int64_t T_ch_last;

static int in_window(int64_t t) { return t >= T_win_start && t < T_win_end; }

static const char *conn_topic(conn *c) {
    if (opt.scenario == SC_PINGPONG) return g_topics[c->idx];
    return opt.topic;
}

static void f_grow(uint64_t seq) {
    if (seq < f_cap) return;
    size_t nc = f_cap ? f_cap : 4096;
    while (nc <= seq) nc *= 2;
    f_recv = xrealloc(f_recv, nc * sizeof *f_recv);
    f_acked = xrealloc(f_acked, nc);
    memset(f_recv + f_cap, 0, (nc - f_cap) * sizeof *f_recv);
    memset(f_acked + f_cap, 0, nc - f_cap);
    f_cap = nc;
}

static void f_push(int64_t now) {
    conn *pub = &g_conns[g_subs];
    uint64_t seq = ++f_sent;
    f_grow(seq);
    if (now >= T_win_start && now < T_win_end) {
        if (!f_win_lo) f_win_lo = seq;
        f_win_hi = seq + 1;
    }
    f_outstanding++;
    send_stamped(pub, opt.topic, "broadcast", seq + 1, seq, now);  /* ref = seq + 1 (ref 1 was the join) */
}

static void on_open(conn *c, int64_t now) {
    (void)now;
    if (!T_first_connect) T_first_connect = c->t_start;
    send_join(c, conn_topic(c));
}

static void joined_one(conn *c, int64_t now) {
    resv_add(&join_t, now - c->t_open);
    c->phase = PH_JOINED;
    g_joined++;
    T_last_join = now;
}

static void on_reply(conn *c, uint64_t ref, int ok, pmsg *m, int64_t now) {
    if (c->phase == PH_JOINING) {
        if (ref != c->wait_ref) return;
        c->wait_ref = 0;
        if (!ok) { conn_fail(c, &err.join); return; }
        joined_one(c, now);
        if (opt.scenario == SC_PINGPONG && g_run_phase == 1 && now < T_win_end) {
            c->wait_ref = c->next_ref++;
            c->t_sent = now;
            send_stamped(c, conn_topic(c), "ping", c->wait_ref, c->wait_ref, now);
        }
        if (opt.scenario == SC_CHURN) {
            c->phase = PH_LEAVING;
            c->wait_ref = c->next_ref++;
            send_push(c, opt.topic, "phx_leave", c->wait_ref, "{}");
        }
        return;
    }
    switch (opt.scenario) {
    case SC_FANOUT:
        if (c->is_pub && ref >= 2) {
            uint64_t seq = ref - 1;
            if (seq > f_sent || f_acked[seq]) { err.bogus++; return; }
            f_acked[seq] = ok ? 1 : 2;
            if (!ok) { err.push_error++; f_pub_acked_err++; }
            else f_acked_n++;
            f_outstanding--;
            if (ok && in_window(now)) f_win_acks++;
            if (opt.rate <= 0 && g_run_phase == 1 && now < T_win_end)
                while (f_outstanding < (uint64_t)opt.window) f_push(now);
        }
        break;
    case SC_PINGPONG:
        if (ref != c->wait_ref) { err.bogus++; return; }
        c->wait_ref = 0;
        if (!ok) { p_errors++; err.push_error++; }
        else {
            /* the echoed payload carries the send time; the local copy is the same value */
            int64_t t = p_key_int(m->payload, m->payload_len, 't');
            if (t < 0) t = c->t_sent;
            p_replies_total++;
            if (in_window(now)) { p_replies_win++; lat_add(now - t); }
        }
        if (g_run_phase == 1 && now < T_win_end) {
            c->wait_ref = c->next_ref++;
            c->t_sent = now;
            send_stamped(c, conn_topic(c), "ping", c->wait_ref, c->wait_ref, now);
        }
        break;
    case SC_CHURN:
        if (c->phase == PH_LEAVING && ref == c->wait_ref) {
            c->wait_ref = 0;
            if (!ok) { conn_fail(c, &err.join); return; }
            c->phase = PH_CLOSING;
            ws_close(c, 1000);
        }
        break;
    default:
        break;
    }
}

static void on_msg(conn *c, pmsg *m, int64_t now) {
    int64_t seq = p_key_int(m->payload, m->payload_len, 's');
    int64_t t = p_key_int(m->payload, m->payload_len, 't');
    switch (opt.scenario) {
    case SC_CONNECT:
        if (seq == 0 && !c->got_bcast && T_bcast_sent) {
            c->got_bcast = 1;
            g_reached++;
        } else if (seq == 0 && !c->got_bcast && opt.await_broadcast && t > 0) {
            c->got_bcast = 1;
            g_reached++;
            if (now - t > g_reach_max_us) g_reach_max_us = now - t;
        }
        break;
    case SC_FANOUT:
        if (c->is_pub) { f_pub_self++; break; }
        if (seq <= 0 || (uint64_t)seq > f_sent) { err.bogus++; break; }
        f_recv[seq]++;
        f_recv_total++;
        c->recv++;
        if ((uint64_t)seq <= c->last_seq) f_reordered++;
        else c->last_seq = (uint64_t)seq;
        if (in_window(now)) { f_win_deliv++; if (t >= 0) lat_add(now - t); }
        break;
    default:
        break;
    }
}

static void on_text(conn *c, char *p, size_t n, int64_t now) {
    pmsg m;
    if (p_parse(p, n, &m) < 0) { err.protocol++; return; }
    if (m.topic_len == 7 && memcmp(m.topic, "phoenix", 7) == 0) {  /* heartbeat reply */
        if (c->t_hb_sent) { resv_add(&hb_t, now - c->t_hb_sent); c->t_hb_sent = 0; }
        return;
    }
    if (p_eq(m.event, m.event_len, "phx_reply")) {
        uint64_t ref = p_u64(m.ref, m.ref_len);
        on_reply(c, ref, p_status_ok(m.payload, m.payload_len), &m, now);
    } else if (p_eq(m.event, m.event_len, "msg")) {
        on_msg(c, &m, now);
    } else if (p_eq(m.event, m.event_len, "phx_error")) {
        err.protocol++;
        if (c->phase == PH_JOINED && opt.scenario != SC_CHURN) conn_fail(c, NULL);
    }
    /* phx_close (after a leave) and anything else: ignored */
}

static void on_closed(conn *c, int clean, int64_t now) {
    int was_joined = c->phase == PH_JOINED || c->phase == PH_LEAVING || c->phase == PH_CLOSING;
    switch (opt.scenario) {
    case SC_CHURN:
        if (c->phase == PH_CLOSING) { ch_done++; T_ch_last = now; }
        else { ch_failed++; if (clean) err.closed++; }
        break;
    case SC_CONNECT:
        if (g_in_close) { if (clean) g_closed_clean++; break; }
        if (!was_joined) { g_failed++; if (clean) err.closed++; }
        else { g_joined--; g_failed++; err.closed++; if (g_in_hold) g_dropped_hold++; }
        break;
    default:
        if (g_run_phase >= 3) break;
        if (!was_joined) { g_failed++; if (clean) err.closed++; }
        else { err.closed++; if (!c->is_pub) g_subs_dropped++; }
        if (c->is_pub && g_run_phase < 2) { g_aborted = 1; g_abort_reason = "publisher connection lost"; }
        break;
    }
    c->phase = PH_NONE;
}

/* Start connections while under the handshake concurrency limit. */
static void start_more(int64_t now) {
    while (g_started < g_target && g_inflight_hs < opt.concurrency) {
        conn *c = &g_conns[g_started];
        c->idx = (int)g_started;
        g_started++;
        conn_start(c, now);
    }
}

static void sweep(int64_t now) {
    int64_t hb = (int64_t)(opt.heartbeat_s * 1e6);
    for (long i = 0; i < g_nconns; i++) {
        conn *c = &g_conns[i];
        if (c->fd < 0) continue;
        if (c->state == CS_OPEN && hb > 0 && now - c->t_hb >= hb) { c->t_hb = now; send_heartbeat(c); }
        if (opt.scenario == SC_CHURN && now - c->t_start > 10000000) conn_fail(c, &err.timeout);
    }
}

static void progress(int64_t now) {
    if (opt.quiet) return;
    double t = (now - g_t0) / 1e6;
    switch (opt.scenario) {
    case SC_CHURN:
        fprintf(stderr, "[%6.1fs] churn: started=%ld done=%ld failed=%ld open=%ld\n", t, g_started, ch_done, ch_failed, g_open);
        break;
    case SC_FANOUT:
        fprintf(stderr, "[%6.1fs] fanout: joined=%ld/%ld pushes=%llu acked=%llu outstanding=%llu deliveries=%llu\n", t,
                g_joined, g_target, (unsigned long long)f_sent, (unsigned long long)f_acked_n,
                (unsigned long long)f_outstanding, (unsigned long long)f_recv_total);
        break;
    case SC_PINGPONG:
        fprintf(stderr, "[%6.1fs] pingpong: joined=%ld/%ld replies=%llu\n", t, g_joined, g_target,
                (unsigned long long)p_replies_total);
        break;
    default:
        fprintf(stderr, "[%6.1fs] connect: started=%ld connected=%ld joined=%ld failed=%ld open=%ld\n", t, g_started,
                g_connected, g_joined, g_failed, g_open);
    }
}

/* TcpExt ListenOverflows of this network namespace (-1 if unreadable): the run's delta
   says whether the server's accept queue overflowed (SYNs dropped, 1 s retransmits). */
static long long listen_overflows(void) {
    FILE *f = fopen("/proc/net/netstat", "r");
    if (!f) return -1;
    static char names[8192], vals[8192];
    long long v = -1;
    while (fgets(names, sizeof names, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(names, "TcpExt:", 7) != 0) continue;
        char *sn, *sv, *n = strtok_r(names, " \n", &sn), *x = strtok_r(vals, " \n", &sv);
        while (n && x) {
            if (strcmp(n, "ListenOverflows") == 0) { v = atoll(x); break; }
            n = strtok_r(NULL, " \n", &sn); x = strtok_r(NULL, " \n", &sv);
        }
        break;
    }
    fclose(f);
    return v;
}

static void on_signal(int s) { (void)s; g_stop = 1; }

/* One pass of the event loop. */
static struct epoll_event g_evs[4096];
static int64_t T_next_sweep, T_next_progress, T_deadline;

static void loop_once(int timeout_ms) {
    int n = epoll_wait(g_ep, g_evs, 4096, timeout_ms);
    if (n < 0 && errno != EINTR) { perror("epoll_wait"); g_aborted = 1; g_abort_reason = "epoll_wait failed"; return; }
    int64_t now;
    for (int i = 0; i < n; i++) on_event((conn *)g_evs[i].data.ptr, g_evs[i].events);
    now = now_us();
    if (now >= T_next_sweep) { sweep(now); T_next_sweep = now + 250000; }
    if (now >= T_next_progress) { progress(now); T_next_progress = now + 1000000; }
    if (now >= T_deadline && !g_aborted) { g_aborted = 1; g_abort_reason = "--max-s reached"; }
    if (g_stop && !g_aborted) { g_aborted = 1; g_abort_reason = "interrupted"; }
}

/* Connect+join g_target connections; returns when all have joined or failed, or on timeout. */
static void run_join_phase(void) {
    int64_t deadline = now_us() + (int64_t)(opt.phase_timeout_s * 1e6);
    T_phase_start = now_us();
    while (!g_aborted) {
        int64_t now = now_us();
        start_more(now);
        if (g_started >= g_target && g_joined + g_failed >= g_target) break;
        if (now >= deadline) {
            /* count stragglers as failed */
            for (long i = 0; i < g_target; i++) {
                conn *c = &g_conns[i];
                if (c->fd >= 0 && c->phase != PH_JOINED) conn_fail(c, &err.timeout);
            }
            fprintf(stderr, "loadgen: join phase timed out after %.0f s\n", opt.phase_timeout_s);
            break;
        }
        loop_once(20);
    }
}

static void close_all(double wait_s) {
    g_in_close = 1;
    for (long i = 0; i < g_nconns; i++) {
        conn *c = &g_conns[i];
        if (c->fd >= 0 && (c->state == CS_OPEN)) ws_close(c, 1000);
        else if (c->fd >= 0) conn_release(c);
    }
    int64_t end = now_us() + (int64_t)(wait_s * 1e6);
    while (g_open > 0 && now_us() < end && !g_stop) loop_once(20);
    for (long i = 0; i < g_nconns; i++) if (g_conns[i].fd >= 0) conn_release(&g_conns[i]);
}

static void run_connect(void) {
    g_target = g_nconns = opt.n;
    g_conns = calloc((size_t)g_nconns, sizeof(conn));
    for (long i = 0; i < g_nconns; i++) { g_conns[i].fd = -1; g_conns[i].idx = (int)i; }
    run_join_phase();
    int64_t join_done = now_us();
    long joined_at_end = g_joined;
    double cj_s = (T_last_join > T_first_connect) ? (T_last_join - T_first_connect) / 1e6 : 0;

    if (opt.broadcast_reach && !g_aborted && g_joined > 0) {
        conn *sender = NULL;
        for (long i = 0; i < g_nconns; i++) if (g_conns[i].phase == PH_JOINED) { sender = &g_conns[i]; break; }
        int64_t now = now_us();
        T_bcast_sent = now;
        long want = g_joined;
        send_stamped(sender, opt.topic, "broadcast", sender->next_ref++, 0, now);
        int64_t end = now + 30000000;  /* bounded: 30 s */
        while (!g_aborted && g_reached < want && g_reached < g_joined && now_us() < end) loop_once(5);
        if (g_reached >= want || g_reached >= g_joined) T_bcast_done = now_us();
        fprintf(stderr, "loadgen: broadcast reached %ld/%ld\n", g_reached, want);
    }
    /* hold */
    if (!g_aborted) {
        g_in_hold = 1;
        fprintf(stderr, "HOLDING\n");
        fflush(stderr);
        int64_t end = now_us() + (int64_t)(opt.hold_s * 1e6);
        while (!g_aborted && now_us() < end) {
            loop_once(100);
            /* --await-broadcast: the hold ends once every connection got the broadcast and
               answered a heartbeat sent after it, so round trips are measured too. */
            if (opt.await_broadcast && g_reached > 0 && g_reached >= g_joined && hb_t.seen >= (uint64_t)g_joined) break;
        }
        g_in_hold = 0;
    }
    long held = g_joined;
    close_all(5.0);
    jint("conns", opt.n);
    jint("connected", g_connected);
    jint("joined", joined_at_end);
    jint("failed", opt.n - joined_at_end);
    jdbl("connect_join_s", cj_s);
    jdbl("connect_join_per_s", cj_s > 0 ? joined_at_end / cj_s : 0);
    jdbl("join_phase_s", (join_done - T_phase_start) / 1e6);
    emit_setup_times();
    if (opt.broadcast_reach) {
        jint("broadcast_reached", g_reached);
        if (T_bcast_done) jdblp("broadcast_reach_ms", (T_bcast_done - T_bcast_sent) / 1000.0, 3);
        else jnull("broadcast_reach_ms");
    }
    if (opt.await_broadcast) {
        jint("broadcast_reached", g_reached);
        if (g_reached) jdblp("broadcast_reach_ms", g_reach_max_us / 1000.0, 3);
        else jnull("broadcast_reach_ms");
    }
    emit_resv(&hb_t, "heartbeat_", 0);
    jint("heartbeat_replies", (long long)hb_t.seen);
    jdbl("hold_s", opt.hold_s);
    jint("held_at_end", held);
    jint("dropped_during_hold", g_dropped_hold);
    jint("closed_clean", g_closed_clean);
}

static cpu_mark g_cpu_win0, g_cpu_win1;

static void run_fanout(void) {
    g_subs = opt.n;
    g_target = g_nconns = opt.n + 1;   /* + the publisher, last */
    g_conns = calloc((size_t)g_nconns, sizeof(conn));
    for (long i = 0; i < g_nconns; i++) { g_conns[i].fd = -1; g_conns[i].idx = (int)i; }
    g_conns[g_subs].is_pub = 1;
    f_grow(1);
    run_join_phase();
    conn *pub = &g_conns[g_subs];
    g_subs_joined = g_joined - (pub->phase == PH_JOINED ? 1 : 0);
    if (pub->phase != PH_JOINED && !g_aborted) { g_aborted = 1; g_abort_reason = "publisher failed to join"; }
    if (g_subs_joined == 0 && g_subs > 0 && !g_aborted) { g_aborted = 1; g_abort_reason = "no subscriber joined"; }
    double join_s = (T_last_join - T_first_connect) / 1e6;
    if (!g_aborted)
        fprintf(stderr, "loadgen: %ld subscribers joined in %.2f s; running %.1f s warmup + %.1f s\n",
                g_subs_joined, join_s, opt.warmup, opt.duration);
    if (!g_aborted) {
        T_run = now_us();
        T_win_start = T_run + (int64_t)(opt.warmup * 1e6);
        T_win_end = T_win_start + (int64_t)(opt.duration * 1e6);
        g_run_phase = 1;
        int cpu_started = 0;
        int64_t now = T_run;
        if (opt.rate <= 0) while (f_outstanding < (uint64_t)opt.window) f_push(now);
        while (!g_aborted) {
            now = now_us();
            if (!cpu_started && now >= T_win_start) { g_cpu_win0 = cpu_now(); cpu_started = 1; }
            if (now >= T_win_end) break;
            if (opt.rate > 0) {
                uint64_t due = (uint64_t)((now - T_run) / 1e6 * opt.rate);
                while (f_sent + f_skipped < due) {
                    if (f_outstanding >= (uint64_t)opt.max_outstanding) { f_skipped++; continue; }
                    f_push(now);
                }
            } else if (f_outstanding < (uint64_t)opt.window) {
                while (f_outstanding < (uint64_t)opt.window) f_push(now);
            }
            int64_t to_end = (T_win_end - now) / 1000;
            int tmo = opt.rate > 0 ? 1 : 50;
            if (!cpu_started && (T_win_start - now) / 1000 < tmo) tmo = (int)((T_win_start - now) / 1000);
            if (to_end < tmo) tmo = (int)to_end;
            if (tmo < 0) tmo = 0;
            loop_once(tmo);
        }
        g_cpu_win1 = cpu_now();
        if (!cpu_started) g_cpu_win0 = g_cpu_win1;
        /* drain: wait for acks and stragglers, up to 5 s */
        g_run_phase = 2;
        T_drain_end = now_us() + 5000000;
        while (!g_aborted && now_us() < T_drain_end) {
            long alive = 0;
            for (long i = 0; i < g_subs; i++) if (g_conns[i].phase == PH_JOINED) alive++;
            if (f_outstanding == 0 && f_recv_total >= f_acked_n * (uint64_t)alive) {
                /* every acked push reached every live subscriber */
                int all = 1;
                for (uint64_t s = 1; s <= f_sent && all; s++)
                    if (f_acked[s] == 1 && f_recv[s] < (uint32_t)alive) all = 0;
                if (all) break;
            }
            loop_once(10);
        }
        g_run_phase = 3;
    }
    double D = opt.duration;
    uint64_t win_pushes = f_win_lo ? f_win_hi - f_win_lo : 0, win_acked = 0, win_unacked = 0, expected = 0, got = 0;
    for (uint64_t s = f_win_lo; s && s < f_win_hi; s++) {
        if (f_acked[s] == 1) {
            win_acked++;
            expected += (uint64_t)g_subs_joined;
            got += f_recv[s] < (uint32_t)g_subs_joined ? f_recv[s] : (uint32_t)g_subs_joined;
        } else if (!f_acked[s]) win_unacked++;
    }
    g_run_phase = 3;
    close_all(2.0);
    jint("subs", g_subs);
    jint("subs_joined", g_subs_joined);
    jint("failed", g_subs - g_subs_joined);
    jdbl("join_s", join_s);
    emit_setup_times();
    jdbl("rate", opt.rate);
    jint("window", opt.window);
    jdbl("duration_s", D);
    jdbl("warmup_s", opt.warmup);
    jdbl("deliveries_per_s", f_win_deliv / D);
    jdbl("pushes_per_s", f_win_acks / D);
    emit_latency();
    jint("pushes_sent", (long long)f_sent);
    jint("pushes_acked", (long long)f_acked_n);
    jint("push_errors", (long long)f_pub_acked_err);
    jint("pushes_skipped", (long long)f_skipped);
    jint("window_pushes", (long long)win_pushes);
    jint("window_pushes_acked", (long long)win_acked);
    jint("window_pushes_unacked", (long long)win_unacked);
    jint("expected_deliveries", (long long)expected);
    jint("received_deliveries", (long long)got);
    jint("lost", (long long)(expected - got));
    jint("deliveries_total", (long long)f_recv_total);
    jint("reordered", (long long)f_reordered);
    jint("publisher_self_msgs", (long long)f_pub_self);
    jint("subs_dropped", g_subs_dropped);
}

static void run_pingpong(void) {
    g_target = g_nconns = opt.n;
    g_conns = calloc((size_t)g_nconns, sizeof(conn));
    g_topics = calloc((size_t)g_nconns, sizeof(char *));
    for (long i = 0; i < g_nconns; i++) {
        g_conns[i].fd = -1; g_conns[i].idx = (int)i;
        char b[64];
        snprintf(b, sizeof b, "bench:pp%ld", i);
        g_topics[i] = strdup(b);
    }
    run_join_phase();
    long joined = g_joined;
    double join_s = (T_last_join - T_first_connect) / 1e6;
    if (joined == 0 && !g_aborted) { g_aborted = 1; g_abort_reason = "no client joined"; }
    if (!g_aborted) {
        T_run = now_us();
        T_win_start = T_run + (int64_t)(opt.warmup * 1e6);
        T_win_end = T_win_start + (int64_t)(opt.duration * 1e6);
        g_run_phase = 1;
        for (long i = 0; i < g_nconns; i++) {
            conn *c = &g_conns[i];
            if (c->phase != PH_JOINED) continue;
            c->wait_ref = c->next_ref++;
            c->t_sent = now_us();
            send_stamped(c, conn_topic(c), "ping", c->wait_ref, c->wait_ref, c->t_sent);
        }
        int cpu_started = 0;
        while (!g_aborted) {
            int64_t now = now_us();
            if (!cpu_started && now >= T_win_start) { g_cpu_win0 = cpu_now(); cpu_started = 1; }
            if (now >= T_win_end) break;
            int tmo = 50;
            if (!cpu_started && (T_win_start - now) / 1000 < tmo) tmo = (int)((T_win_start - now) / 1000);
            if ((T_win_end - now) / 1000 < tmo) tmo = (int)((T_win_end - now) / 1000);
            loop_once(tmo < 0 ? 0 : tmo);
        }
        g_cpu_win1 = cpu_now();
        if (!cpu_started) g_cpu_win0 = g_cpu_win1;
        g_run_phase = 2;
        int64_t end = now_us() + 5000000;  /* let outstanding pings come back */
        while (!g_aborted && now_us() < end) {
            int busy = 0;
            for (long i = 0; i < g_nconns && !busy; i++) if (g_conns[i].phase == PH_JOINED && g_conns[i].wait_ref) busy = 1;
            if (!busy) break;
            loop_once(10);
        }
        g_run_phase = 3;
    }
    g_run_phase = 3;
    close_all(2.0);
    jint("clients", opt.n);
    jint("joined", joined);
    jint("failed", opt.n - joined);
    jdbl("join_s", join_s);
    emit_setup_times();
    jdbl("duration_s", opt.duration);
    jdbl("warmup_s", opt.warmup);
    jdbl("replies_per_s", p_replies_win / opt.duration);
    emit_latency();
    jint("replies_total", (long long)p_replies_total);
    jint("reply_errors", (long long)p_errors);
}

static void run_churn(void) {
    g_nconns = opt.concurrency;
    if (g_nconns > opt.n) g_nconns = opt.n;
    g_conns = calloc((size_t)(g_nconns ? g_nconns : 1), sizeof(conn));
    for (long i = 0; i < g_nconns; i++) { g_conns[i].fd = -1; g_conns[i].idx = (int)i; g_conns[i].state = CS_FREE; }
    int64_t t_first = now_us();
    long started = 0;
    while (!g_aborted) {
        int64_t now = now_us();
        for (long i = 0; i < g_nconns && started < opt.n; i++) {
            conn *c = &g_conns[i];
            if (c->fd >= 0) continue;
            started++;
            g_started = started;
            conn_start(c, now);
        }
        if (started >= opt.n && g_open == 0) break;
        loop_once(20);
    }
    double el = (T_ch_last > t_first) ? (T_ch_last - t_first) / 1e6 : 0;
    for (long i = 0; i < g_nconns; i++) if (g_conns[i].fd >= 0) conn_release(&g_conns[i]);
    jint("cycles", opt.n);
    jint("completed", ch_done);
    jint("failed", opt.n - ch_done);
    jdbl("elapsed_s", el);
    jdbl("cycles_per_s", el > 0 ? ch_done / el : 0);
    emit_setup_times();
}

/* ------------------------------------------------------------------- main */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--host 127.0.0.1] [--path /socket/websocket?vsn=2.0.0]\n"
            "               [--max-s 900] [--payload-bytes 0] [--heartbeat-s 30] [--phase-timeout-s 120] [--quiet]\n"
            "               [--kernel-ports] [--src-addr 127.0.0.1]\n"
            "               SCENARIO [options]\n"
            "  connect  --conns N [--topic bench:s1] [--concurrency 200] [--hold-s 0]\n"
            "           [--broadcast-reach | --await-broadcast]\n"
            "  fanout   --subs N [--topic bench:fan] [--rate 0] [--window 50] [--duration 10] [--warmup 2]\n"
            "           [--max-outstanding 10000] [--concurrency 200]\n"
            "  pingpong --clients K [--duration 10] [--warmup 2] [--concurrency 200]\n"
            "  churn    --cycles C [--concurrency 50] [--topic bench:churn]\n");
    exit(2);
}

static double arg_d(const char *o, const char *v) {
    char *e;
    if (!v) die("%s needs a value", o);
    double d = strtod(v, &e);
    if (*e || e == v || d != d || d < 0) die("bad value for %s: %s", o, v);
    return d;
}
static long arg_l(const char *o, const char *v) {
    char *e;
    if (!v) die("%s needs a value", o);
    long l = strtol(v, &e, 10);
    if (*e || e == v || l < 0) die("bad value for %s: %s", o, v);
    return l;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && (i++, 1))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage();
        else if (strcmp(a, "--broadcast-reach") == 0) opt.broadcast_reach = 1;
        else if (strcmp(a, "--await-broadcast") == 0) opt.await_broadcast = 1;
        else if (OPT("--src-addr")) {
            if (!v || inet_pton(AF_INET, v, &g_src_addr) != 1 || (ntohl(g_src_addr.s_addr) >> 24) != 127)
                die("--src-addr must be a loopback address (127.0.0.0/8)");
        }
        else if (strcmp(a, "--quiet") == 0) opt.quiet = 1;
        else if (strcmp(a, "--kernel-ports") == 0) g_kernel_ports = 1;
        else if (OPT("--port")) opt.port = (int)arg_l(a, v);
        else if (OPT("--host")) { if (!v) die("--host needs a value"); opt.host = v; }
        else if (OPT("--path")) { if (!v) die("--path needs a value"); opt.path = v; }
        else if (OPT("--conns") || OPT("--subs") || OPT("--clients") || OPT("--cycles")) opt.n = arg_l(a, v);
        else if (OPT("--topic")) { if (!v) die("--topic needs a value"); opt.topic = v; }
        else if (OPT("--concurrency")) opt.concurrency = (int)arg_l(a, v);
        else if (OPT("--hold-s")) opt.hold_s = arg_d(a, v);
        else if (OPT("--rate")) opt.rate = arg_d(a, v);
        else if (OPT("--window")) opt.window = (int)arg_l(a, v);
        else if (OPT("--duration")) opt.duration = arg_d(a, v);
        else if (OPT("--warmup")) opt.warmup = arg_d(a, v);
        else if (OPT("--max-s")) opt.max_s = arg_d(a, v);
        else if (OPT("--phase-timeout-s")) opt.phase_timeout_s = arg_d(a, v);
        else if (OPT("--heartbeat-s")) opt.heartbeat_s = arg_d(a, v);
        else if (OPT("--payload-bytes")) opt.payload_bytes = (int)arg_l(a, v);
        else if (OPT("--max-outstanding")) opt.max_outstanding = arg_l(a, v);
        else if (a[0] != '-' && opt.scenario < 0) {
            for (int s = 0; s < 4; s++) if (strcmp(a, sc_names[s]) == 0) opt.scenario = s;
            if (opt.scenario < 0) die("unknown scenario: %s", a);
        } else die("unknown argument: %s (try --help)", a);
#undef OPT
    }
    if (opt.scenario < 0) usage();
    if (opt.port <= 0 || opt.port > 65535) die("--port is required (1-65535)");
    if (strcmp(opt.host, "127.0.0.1") != 0 && strcmp(opt.host, "localhost") != 0)
        die("refusing --host %s: loopback only (127.0.0.1 or localhost)", opt.host);
    if (opt.path[0] != '/' || strpbrk(opt.path, " \r\n")) die("bad --path");
    const char *what[] = {"--conns", "--subs", "--clients", "--cycles"};
    if (opt.n < 0) die("%s is required for %s", what[opt.scenario], sc_names[opt.scenario]);
    if (opt.n > 1000000) die("%s: at most 1000000", what[opt.scenario]);
    if (opt.concurrency < 0) opt.concurrency = opt.scenario == SC_CHURN ? 50 : 200;
    if (opt.concurrency < 1) opt.concurrency = 1;
    if (!opt.topic) opt.topic = opt.scenario == SC_FANOUT ? "bench:fan" : opt.scenario == SC_CHURN ? "bench:churn" : "bench:s1";
    if (strpbrk(opt.topic, "\"\\") || strlen(opt.topic) > 200) die("bad --topic");
    if (opt.window < 1) opt.window = 1;
    if (opt.max_outstanding < 1) opt.max_outstanding = 1;
    if (opt.scenario == SC_FANOUT || opt.scenario == SC_PINGPONG) {
        if (opt.duration <= 0) die("--duration must be > 0");
        if (opt.duration > 86400 || opt.warmup > 86400) die("--duration/--warmup too long");
    }
    if (opt.payload_bytes > 1000000) die("--payload-bytes: at most 1000000");
    if (opt.payload_bytes > 0) {
        int k = snprintf(g_pad, sizeof g_pad, ",\"p\":\"");
        memset(g_pad + k, 'x', (size_t)opt.payload_bytes);
        strcpy(g_pad + k + opt.payload_bytes, "\"");
    }

    /* file descriptors: raise the soft limit to the hard one */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        long need = (opt.scenario == SC_CHURN ? opt.concurrency : opt.n + 1) + 16;
        if ((rlim_t)need > rl.rlim_cur)
            fprintf(stderr, "loadgen: warning: RLIMIT_NOFILE %llu < %ld needed\n", (unsigned long long)rl.rlim_cur, need);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)opt.port);
    g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(g_hostport, sizeof g_hostport, "127.0.0.1:%d", opt.port);

    rng_state ^= (uint64_t)now_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() << 32;
    if (!rng_state) rng_state = 1;
    ports_init();
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) { perror("epoll_create1"); return 1; }
    g_t0 = now_us();
    T_deadline = g_t0 + (int64_t)(opt.max_s * 1e6);
    T_next_sweep = g_t0 + 250000;
    T_next_progress = g_t0 + 1000000;

    g_outn = 0;
    jraw("{");
    jstr("scenario", sc_names[opt.scenario]);
    jstr("host", "127.0.0.1");
    jint("port", opt.port);
    jstr("path", opt.path);
    if (opt.scenario != SC_PINGPONG) jstr("topic", opt.topic);
    jint("concurrency", opt.concurrency);
    jint("payload_bytes", opt.payload_bytes);

    long long lo0 = listen_overflows();
    switch (opt.scenario) {
    case SC_CONNECT: run_connect(); break;
    case SC_FANOUT: run_fanout(); break;
    case SC_PINGPONG: run_pingpong(); break;
    case SC_CHURN: run_churn(); break;
    }

    cpu_mark end = cpu_now();
    double wall = (end.t - g_t0) / 1e6;
    jsep();
    jraw("\"errors\": {\"connect\": %ld, \"handshake\": %ld, \"join\": %ld, \"closed\": %ld, \"timeout\": %ld, "
         "\"protocol\": %ld, \"write\": %ld, \"push_error\": %ld, \"bogus\": %ld}",
         err.connect, err.handshake, err.join, err.closed, err.timeout, err.protocol, err.write, err.push_error, err.bogus);
    if (opt.scenario == SC_FANOUT || opt.scenario == SC_PINGPONG) {
        double ws = (g_cpu_win1.t - g_cpu_win0.t) / 1e6;
        jdblp("window_cpu_user_s", g_cpu_win1.u - g_cpu_win0.u, 3);
        jdblp("window_cpu_sys_s", g_cpu_win1.s - g_cpu_win0.s, 3);
        jdblp("window_wall_s", ws, 3);
        jdblp("window_cpu_share", ws > 0 ? (g_cpu_win1.u - g_cpu_win0.u + g_cpu_win1.s - g_cpu_win0.s) / ws : 0, 3);
    }
    jint("port_fallbacks", g_port_fallbacks);
    long long lo1 = listen_overflows();
    jint("listen_overflows", lo0 >= 0 && lo1 >= 0 ? lo1 - lo0 : -1);
    jdblp("cpu_user_s", end.u, 3);
    jdblp("cpu_sys_s", end.s, 3);
    jdblp("wall_s", wall, 3);
    jdblp("cpu_share", wall > 0 ? (end.u + end.s) / wall : 0, 3);
    jsep();
    jraw("\"aborted\": %s", g_aborted ? "true" : "false");
    if (g_aborted) jstr("abort_reason", g_abort_reason);
    jraw("}");
    printf("%s\n", g_out);
    fflush(stdout);
    return g_aborted ? 1 : 0;
}
