/*
 * refserver: a minimal, fast, single-threaded C server speaking the bench protocol,
 * used ONLY to measure the load generator's own ceiling (it is not a baseline for
 * greenphx and implements nothing beyond what the benchmarks exercise).
 *
 * Build:  make -C bench/loadgen   (or: gcc -O2 -std=gnu11 -Wall -o refserver refserver.c)
 * Run:    ./refserver [--port 0] [--max-s 600] [--no-coalesce]
 *         prints "listening on http://127.0.0.1:PORT" on stdout when ready, and exits by
 *         itself after --max-s seconds (or on SIGINT/SIGTERM).
 *
 * Endpoint: ws://127.0.0.1:PORT/socket/websocket?vsn=2.0.0 (any path is accepted),
 * Phoenix V2 JSON frames [join_ref, ref, topic, event, payload]:
 *   phx_join  -> reply ok {}            phx_leave -> reply ok {}, then phx_close
 *   "ping"    -> reply ok <payload>     "broadcast" -> push "msg" <payload> to every
 *   heartbeat (topic "phoenix") -> ok     member of the topic (sender too), reply ok {}
 * Replies to topics not joined: error {"reason":"unmatched topic"}.
 * Writes are coalesced per connection and flushed once per epoll batch; with
 * --no-coalesce every frame is its own send() (the generator's worst case: one
 * frame per read, as against a server that writes frame by frame).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q && n) { fprintf(stderr, "refserver: out of memory\n"); exit(1); }
    return q;
}

/* SHA-1 + base64 for Sec-WebSocket-Accept */
static uint32_t rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }
static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f, k, t;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        t = rol(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}
static void sha1(const uint8_t *p, size_t n, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t blk[64];
    size_t i = 0;
    for (; i + 64 <= n; i += 64) sha1_block(h, p + i);
    size_t r = n - i;
    memcpy(blk, p + i, r);
    blk[r++] = 0x80;
    if (r > 56) { memset(blk + r, 0, 64 - r); sha1_block(h, blk); r = 0; }
    memset(blk + r, 0, 56 - r);
    uint64_t bits = (uint64_t)n * 8;
    for (int j = 0; j < 8; j++) blk[56 + j] = (uint8_t)(bits >> (56 - 8 * j));
    sha1_block(h, blk);
    for (int j = 0; j < 5; j++) { out[4*j] = h[j] >> 24; out[4*j+1] = h[j] >> 16; out[4*j+2] = h[j] >> 8; out[4*j+3] = h[j]; }
}
static void b64(const uint8_t *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = t[(v >> 6) & 63]; out[o++] = t[v & 63];
    }
    if (n - i == 1) { uint32_t v = (uint32_t)in[i] << 16; out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = '='; out[o++] = '='; }
    else if (n - i == 2) { uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8; out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = t[(v >> 6) & 63]; out[o++] = '='; }
    out[o] = 0;
}

typedef struct topic topic;
typedef struct conn conn;
#define MAXMEMB 8
typedef struct { topic *t; int pos; char jr[40]; int jrl; } memb;  /* jr: raw JSON token */
struct conn {
    int fd, ws, dirty, want_out, closing, nmemb;
    char *in; size_t in_len, in_cap;
    char *out; size_t out_len, out_off, out_cap;
    memb m[MAXMEMB];
};
typedef struct { conn *c; int mi; } sub;
struct topic { char *name; int nlen; sub *subs; int n, cap; topic *next; };

#define NBUCKET 65536
static topic *g_topics[NBUCKET];
static int g_ep;
static conn **g_dirty; static size_t g_ndirty, g_dcap;
static char g_rbuf[1 << 18];
static char g_tmp[(1 << 21)];
static volatile sig_atomic_t g_stop;
static int g_immediate;  /* --no-coalesce: one send() per frame, as a naive server does */
static void flush(conn *c);

static uint32_t hash(const char *s, int n) { uint32_t h = 2166136261u; for (int i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u; return h; }
static topic *topic_get(const char *s, int n, int create) {
    uint32_t b = hash(s, n) & (NBUCKET - 1);
    for (topic *t = g_topics[b]; t; t = t->next) if (t->nlen == n && memcmp(t->name, s, (size_t)n) == 0) return t;
    if (!create) return NULL;
    topic *t = calloc(1, sizeof *t);
    t->name = malloc((size_t)n + 1); memcpy(t->name, s, (size_t)n); t->name[n] = 0; t->nlen = n;
    t->next = g_topics[b]; g_topics[b] = t;
    return t;
}

static void out_append(conn *c, const void *p, size_t n) {
    if (c->out_len + n > c->out_cap) {
        size_t nc = c->out_cap ? c->out_cap : 4096;
        while (nc < c->out_len + n) nc *= 2;
        c->out = xrealloc(c->out, nc); c->out_cap = nc;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (!c->dirty) {
        c->dirty = 1;
        if (g_ndirty == g_dcap) { g_dcap = g_dcap ? g_dcap * 2 : 1024; g_dirty = xrealloc(g_dirty, g_dcap * sizeof *g_dirty); }
        g_dirty[g_ndirty++] = c;
    }
}

static size_t frame_hdr(uint8_t *h, int op, size_t n) {
    h[0] = 0x80 | op;
    if (n < 126) { h[1] = (uint8_t)n; return 2; }
    if (n < 65536) { h[1] = 126; h[2] = n >> 8; h[3] = n & 255; return 4; }
    h[1] = 127; for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i)); return 10;
}
static void ws_frame(conn *c, int op, const char *p, size_t n) {
    uint8_t h[10]; size_t hl = frame_hdr(h, op, n);
    out_append(c, h, hl); out_append(c, p, n);
    if (g_immediate) flush(c);
}

static void leave(conn *c, int mi) {
    memb *m = &c->m[mi];
    topic *t = m->t;
    int pos = m->pos;
    t->n--;
    if (pos != t->n) {  /* swap-remove, fix the moved member's back pointer */
        t->subs[pos] = t->subs[t->n];
        t->subs[pos].c->m[t->subs[pos].mi].pos = pos;
    }
    c->nmemb--;
    if (mi != c->nmemb) {
        c->m[mi] = c->m[c->nmemb];
        c->m[mi].t->subs[c->m[mi].pos].mi = mi;
    }
}

static void conn_close(conn *c) {
    while (c->nmemb) leave(c, c->nmemb - 1);
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (!c->dirty) { free(c->in); free(c->out); free(c); }
    /* a dirty conn is freed by the flush pass */
}

static int find_memb(conn *c, const char *t, int tl) {
    for (int i = 0; i < c->nmemb; i++) if (c->m[i].t->nlen == tl && memcmp(c->m[i].t->name, t, (size_t)tl) == 0) return i;
    return -1;
}

/* raw token spans */
typedef struct { const char *s; int n; } span;
static const char *sk(const char *p, const char *e) { while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++; return p; }
static const char *tok(const char *p, const char *e, span *out) {  /* string or null, raw */
    p = sk(p, e);
    if (e - p >= 4 && !memcmp(p, "null", 4)) { out->s = p; out->n = 4; return p + 4; }
    if (p >= e || *p != '"') return NULL;
    const char *q = p + 1;
    while (q < e && *q != '"') { if (*q == '\\') q++; q++; }
    if (q >= e) return NULL;
    out->s = p; out->n = (int)(q + 1 - p);
    return q + 1;
}

static void reply(conn *c, span jr, span ref, span topic_raw, const char *status, const char *resp, int rl) {
    int n = snprintf(g_tmp, sizeof g_tmp, "[%.*s,%.*s,%.*s,\"phx_reply\",{\"response\":%.*s,\"status\":\"%s\"}]",
                     jr.n, jr.s, ref.n, ref.s, topic_raw.n, topic_raw.s, rl, resp, status);
    if (n > 0 && (size_t)n < sizeof g_tmp) ws_frame(c, 1, g_tmp, (size_t)n);
}

static void on_text(conn *c, const char *p, size_t n) {
    const char *e = p + n;
    span jr, ref, tp, ev;
    p = sk(p, e);
    if (p >= e || *p++ != '[') return;
    span *f[4] = {&jr, &ref, &tp, &ev};
    for (int i = 0; i < 4; i++) {
        if (!(p = tok(p, e, f[i]))) return;
        p = sk(p, e);
        if (p >= e || *p++ != ',') return;
    }
    p = sk(p, e);
    while (e > p && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r')) e--;
    if (e <= p || e[-1] != ']') return;
    const char *pl = p; int pll = (int)(e - 1 - p);
    if (tp.n < 2 || ev.n < 2) return;
    const char *t = tp.s + 1; int tl = tp.n - 2;
    const char *evs = ev.s + 1; int evl = ev.n - 2;
#define EV(x) (evl == (int)sizeof(x) - 1 && !memcmp(evs, x, sizeof(x) - 1))
    if (tl == 7 && !memcmp(t, "phoenix", 7)) { reply(c, jr, ref, tp, "ok", "{}", 2); return; }
    int mi = find_memb(c, t, tl);
    if (EV("phx_join")) {
        if (mi < 0 && c->nmemb < MAXMEMB) {
            topic *T = topic_get(t, tl, 1);
            if (T->n == T->cap) { T->cap = T->cap ? T->cap * 2 : 8; T->subs = xrealloc(T->subs, (size_t)T->cap * sizeof(sub)); }
            memb *m = &c->m[c->nmemb];
            m->t = T; m->pos = T->n;
            m->jrl = jr.n < (int)sizeof m->jr ? jr.n : 0;
            memcpy(m->jr, jr.s, (size_t)m->jrl);
            T->subs[T->n].c = c; T->subs[T->n].mi = c->nmemb;
            T->n++; c->nmemb++;
        }
        reply(c, jr, ref, tp, "ok", "{}", 2);
        return;
    }
    if (mi < 0) { reply(c, jr, ref, tp, "error", "{\"reason\":\"unmatched topic\"}", 27); return; }
    if (EV("phx_leave")) {
        reply(c, jr, ref, tp, "ok", "{}", 2);
        int k = snprintf(g_tmp, sizeof g_tmp, "[%.*s,%.*s,%.*s,\"phx_close\",{}]", jr.n, jr.s, jr.n, jr.s, tp.n, tp.s);
        ws_frame(c, 1, g_tmp, (size_t)k);
        leave(c, mi);
    } else if (EV("ping")) {
        reply(c, jr, ref, tp, "ok", pl, pll);
    } else if (EV("broadcast")) {
        topic *T = c->m[mi].t;
        int k = snprintf(g_tmp + 10, sizeof g_tmp - 10, "[null,null,%.*s,\"msg\",%.*s]", tp.n, tp.s, pll, pl);
        if (k > 0 && (size_t)k < sizeof g_tmp - 10) {
            uint8_t h[10]; size_t hl = frame_hdr(h, 1, (size_t)k);
            char *fr = g_tmp + 10 - hl;
            memcpy(fr, h, hl);
            for (int i = 0; i < T->n; i++) {
                out_append(T->subs[i].c, fr, hl + (size_t)k);
                if (g_immediate) flush(T->subs[i].c);
            }
        }
        reply(c, jr, ref, tp, "ok", "{}", 2);
    } else {
        reply(c, jr, ref, tp, "error", "{\"reason\":\"unmatched event\"}", 27);
    }
}

/* returns -1 if the connection is to be closed */
static long parse(conn *c, char *p, size_t n) {
    size_t off = 0;
    if (!c->ws) {
        char *end = memmem(p, n, "\r\n\r\n", 4);
        if (!end) return n > 16384 ? -1 : 0;
        char *k = NULL;
        for (char *l = p; l < end;) {
            char *nl = memmem(l, (size_t)(end - l) + 2, "\r\n", 2);
            if (!nl) break;
            if (nl - l > 18 && !strncasecmp(l, "Sec-WebSocket-Key:", 18)) { k = l + 18; while (*k == ' ') k++; *nl = 0; }
            l = nl + 2;
        }
        if (!k) { static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"; out_append(c, bad, sizeof bad - 1); c->closing = 1; return (long)n; }
        char cat[256]; uint8_t dg[20]; char acc[40];
        int cl = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", k);
        sha1((uint8_t *)cat, (size_t)cl, dg); b64(dg, 20, acc);
        int rl = snprintf(g_tmp, sizeof g_tmp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
        out_append(c, g_tmp, (size_t)rl);
        c->ws = 1;
        off = (size_t)(end - p) + 4;
    }
    while (n - off >= 2) {
        uint8_t *h = (uint8_t *)p + off;
        int op = h[0] & 15;
        if (!(h[1] & 0x80)) return -1;  /* clients must mask */
        uint64_t len = h[1] & 127; size_t hl = 2;
        if (len == 126) { if (n - off < 4) break; len = (uint64_t)h[2] << 8 | h[3]; hl = 4; }
        else if (len == 127) { if (n - off < 10) break; len = 0; for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i]; hl = 10; }
        if (len > (16u << 20)) return -1;
        if (n - off < hl + 4 + len) break;
        uint8_t *mk = h + hl; char *pl = (char *)h + hl + 4;
        for (uint64_t i = 0; i < len; i++) pl[i] ^= mk[i & 3];
        off += hl + 4 + len;
        if (!(h[0] & 0x80)) return -1;  /* no fragmented client messages here */
        if (op == 1) on_text(c, pl, len);
        else if (op == 8) { ws_frame(c, 8, pl, len >= 2 ? 2 : 0); c->closing = 1; return (long)n; }
        else if (op == 9) ws_frame(c, 10, pl, len);
    }
    return (long)off;
}

static void flush(conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                if (!c->want_out) { struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c}; epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev); c->want_out = 1; }
                return;
            }
            c->closing = 1; c->out_off = c->out_len = 0; return;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) { struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c}; epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev); c->want_out = 0; }
}

static void on_sig(int s) { (void)s; g_stop = 1; }

int main(int argc, char **argv) {
    int port = 0; double max_s = 600;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-s") && i + 1 < argc) max_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--no-coalesce")) g_immediate = 1;
        else { fprintf(stderr, "usage: refserver [--port 0] [--max-s 600] [--no-coalesce]\n"); return 2; }
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    signal(SIGPIPE, SIG_IGN); signal(SIGINT, on_sig); signal(SIGTERM, on_sig);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) { perror("bind/listen"); return 1; }
    socklen_t al = sizeof a; getsockname(ls, (struct sockaddr *)&a, &al);
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, ls, &lev);
    printf("listening on http://127.0.0.1:%d\n", ntohs(a.sin_port)); fflush(stdout);
    int64_t deadline = now_us() + (int64_t)(max_s * 1e6);
    static struct epoll_event evs[4096];
    while (!g_stop && now_us() < deadline) {
        int n = epoll_wait(g_ep, evs, 4096, 200);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *nc = calloc(1, sizeof *nc); nc->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->fd < 0) continue;
            if (evs[i].events & EPOLLOUT) {
                flush(c);
                if (c->closing && c->out_len == 0 && !c->dirty) { shutdown(c->fd, SHUT_WR); conn_close(c); continue; }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(c->fd, g_rbuf, sizeof g_rbuf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { conn_close(c); continue; }
                if (r < 0) continue;
                char *p = g_rbuf; size_t len = (size_t)r;
                if (c->in_len) {
                    if (c->in_len + len > c->in_cap) { c->in_cap = (c->in_len + len) * 2; c->in = xrealloc(c->in, c->in_cap); }
                    memcpy(c->in + c->in_len, p, len); c->in_len += len; p = c->in; len = c->in_len;
                }
                long k = parse(c, p, len);
                if (k < 0) { conn_close(c); continue; }
                size_t rest = len - (size_t)k;
                if (p == c->in) { memmove(c->in, c->in + k, rest); c->in_len = rest; }
                else if (rest) {
                    if (rest > c->in_cap) { c->in_cap = rest * 2; c->in = xrealloc(c->in, c->in_cap); }
                    memcpy(c->in, p + k, rest); c->in_len = rest;
                }
            }
        }
        /* flush every connection written to in this batch */
        for (size_t i = 0; i < g_ndirty; i++) {
            conn *c = g_dirty[i];
            c->dirty = 0;
            if (c->fd < 0) { free(c->in); free(c->out); free(c); continue; }
            flush(c);
            if (c->closing && c->out_len == 0) { shutdown(c->fd, SHUT_WR); conn_close(c); }
        }
        g_ndirty = 0;
    }
    return 0;
}
