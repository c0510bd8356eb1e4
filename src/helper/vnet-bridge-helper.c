/*
 * vnet-bridge-helper: a drop-in for qemu-bridge-helper that needs no setuid bit.
 *
 * QEMU (or libvirt) runs `vnet-bridge-helper [--use-vnet] --br=BRIDGE --fd=UNIXFD`, UNIXFD being one
 * end of a connected AF_UNIX stream socketpair. We ask vnetd for a tap on BRIDGE over
 * $VNET_RUNTIME_DIR/vnetd.sock (one frame: 4-byte big-endian length + JSON, see src/api/protocol.ts),
 * receive the tap fd as SCM_RIGHTS on the reply, and pass it on UNIXFD as one byte 0x00 plus the fd,
 * exactly as qemu-bridge-helper does. vnetd decides who may have which tap (SO_PEERCRED + ACLs).
 * Every refusal is one line on stderr starting "vnet-bridge-helper: " and exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PROG "vnet-bridge-helper"
#define MAX_FRAME (64 * 1024)
#define NAME_MAX_BYTES 15 /* IFNAMSIZ - 1 */
#define REPLY_TIMEOUT_S 30
#define DEFAULT_RUNTIME_DIR "/run/vnet"
#define USAGE "Usage: " PROG " [--use-vnet] --br=BRIDGE --fd=UNIXFD"

static unsigned char reply[4 + MAX_FRAME + 1];

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int parse_fd(const char *s) {
    char *end;
    long v = (errno = 0, strtol(s, &end, 10));
    if (s[0] < '0' || s[0] > '9' || errno != 0 || *end != '\0' || v > INT_MAX) die("--fd=%s is not a file descriptor number", s);
    return (int)v;
}

/* UNIXFD must be a connected AF_UNIX stream socket: the only place a tap fd may ever go. */
static void check_unix_socket(int fd) {
    struct stat st;
    struct sockaddr_un peer;
    socklen_t len = sizeof(int);
    int v;
    if (fstat(fd, &st) < 0) die("--fd=%d: %s", fd, strerror(errno));
    if (!S_ISSOCK(st.st_mode)) die("--fd=%d is not a socket", fd);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0 || v != AF_UNIX) die("--fd=%d is not a unix socket", fd);
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0 || v != SOCK_STREAM) die("--fd=%d is not a stream socket", fd);
    len = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0) die("--fd=%d is not a connected socket: %s", fd, strerror(errno));
}

/* Bound every socket wait by one overall deadline. */
static void set_timeouts(int sock, const struct timespec *deadline) {
    struct timespec now;
    struct timeval tv;
    long long left_us;
    clock_gettime(CLOCK_MONOTONIC, &now);
    left_us = (deadline->tv_sec - now.tv_sec) * 1000000LL + (deadline->tv_nsec - now.tv_nsec) / 1000;
    if (left_us <= 0) die("no reply from vnetd within %d s", REPLY_TIMEOUT_S);
    tv = (struct timeval){ .tv_sec = left_us / 1000000, .tv_usec = left_us % 1000000 };
    if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 || setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
        die("setting the socket timeout: %s", strerror(errno));
}

static void send_all(int sock, const unsigned char *buf, size_t len, const struct timespec *deadline) {
    while (len > 0) {
        ssize_t n;
        set_timeouts(sock, deadline);
        n = send(sock, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) die("vnetd did not take the request within %d s", REPLY_TIMEOUT_S);
        if (n < 0) die("sending the request to vnetd: %s", strerror(errno));
        buf += n;
        len -= (size_t)n;
    }
}

/* Keep the first SCM_RIGHTS fd in *fd; close any other. */
static void take_fds(struct msghdr *m, int *fd) {
    struct cmsghdr *c;
    for (c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        size_t i, count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        for (i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
            if (*fd < 0) *fd = got;
            else close(got);
        }
    }
}

/* Read one reply frame (it may come in several pieces); returns its body, NUL-terminated. */
static const char *read_reply(int sock, int *tapfd, const struct timespec *deadline) {
    size_t have = 0, need = 4;
    while (have < need) {
        union { char buf[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } u;
        struct iovec iov = { reply + have, need - have };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
        ssize_t n;
        set_timeouts(sock, deadline);
        n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) die("no reply from vnetd within %d s", REPLY_TIMEOUT_S);
        if (n < 0) die("reading vnetd's reply: %s", strerror(errno));
        take_fds(&m, tapfd);
        if (m.msg_flags & MSG_CTRUNC) die("vnetd's reply carried too many file descriptors");
        if (n == 0) die("vnetd closed the connection before replying");
        have += (size_t)n;
        if (need == 4 && have == 4) {
            uint32_t len = (uint32_t)reply[0] << 24 | (uint32_t)reply[1] << 16 | (uint32_t)reply[2] << 8 | reply[3];
            if (len == 0 || len > MAX_FRAME) die("vnetd sent a frame of %u bytes (allowed 1..%d)", len, MAX_FRAME);
            need = 4 + len;
        }
    }
    reply[need] = '\0';
    return (const char *)reply + 4;
}

/* A minimal JSON reader: enough to find "ok" and "error"."message" in a reply. */
static void ws(const char **p) { while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r') (*p)++; }

/* Parse the string at *p; decode it into out (if not NULL) as one printable line. 0 = ok, -1 = bad. */
static int jstr(const char **p, char *out, size_t cap) {
    const char *s = *p;
    size_t o = 0;
    if (*s++ != '"') return -1;
    for (;;) {
        unsigned c = (unsigned char)*s++, v;
        if (c == '"') break;
        if (c < 0x20) return -1; /* also the terminating NUL */
        if (c == '\\') {
            c = (unsigned char)*s++;
            if (c == 'u') {
                char h[5] = { 0 };
                if (strnlen(s, 4) < 4 || strspn(memcpy(h, s, 4), "0123456789abcdefABCDEF") != 4) return -1;
                v = (unsigned)strtoul(h, NULL, 16);
                s += 4;
                c = v < 0x20 ? ' ' : v < 0x7f ? v : '?';
            } else if (c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
                c = ' ';
            } else if (c != '"' && c != '\\' && c != '/') {
                return -1;
            }
        }
        if (out != NULL && o + 1 < cap) out[o++] = (char)c;
    }
    if (out != NULL) out[o] = '\0';
    *p = s;
    return 0;
}

static int jskip(const char **p, int depth) {
    ws(p);
    if (depth > 32) return -1;
    if (**p == '"') return jstr(p, NULL, 0);
    if (**p == '{' || **p == '[') {
        char close = **p == '{' ? '}' : ']';
        int object = **p == '{';
        (*p)++;
        ws(p);
        if (**p == close) { (*p)++; return 0; }
        for (;;) {
            if (object && (ws(p), jstr(p, NULL, 0) < 0 || (ws(p), *(*p)++ != ':'))) return -1;
            if (jskip(p, depth + 1) < 0) return -1;
            ws(p);
            if (**p == close) { (*p)++; return 0; }
            if (*(*p)++ != ',') return -1;
        }
    }
    if (**p == '\0' || strchr("-0123456789tfn", **p) == NULL) return -1;
    while (**p != '\0' && strchr("-+.0123456789eEtruefalsn", **p) != NULL) (*p)++;
    return 0;
}

/* Where the value of `key` starts in the object at obj, or NULL. */
static const char *jget(const char *p, const char *key) {
    char name[32];
    ws(&p);
    if (*p++ != '{' || (ws(&p), *p == '}')) return NULL;
    for (;;) {
        ws(&p);
        if (jstr(&p, name, sizeof name) < 0 || (ws(&p), *p++ != ':')) return NULL;
        ws(&p);
        if (strcmp(name, key) == 0) return p;
        if (jskip(&p, 1) < 0 || (ws(&p), *p++ != ',')) return NULL;
    }
}

static int is_literal(const char *v, const char *lit) {
    size_t n = strlen(lit);
    return v != NULL && strncmp(v, lit, n) == 0 && strchr(" \t\r\n,}", v[n]) != NULL;
}

/* What QEMU's recv_fd() expects: one sendmsg, a 1-byte body 0x00, one SCM_RIGHTS fd. */
static void pass_fd(int unixfd, int tapfd) {
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    unsigned char zero = 0;
    struct iovec iov = { &zero, 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct cmsghdr *c;
    memset(&u, 0, sizeof u);
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &tapfd, sizeof tapfd);
    while (sendmsg(unixfd, &m, MSG_NOSIGNAL) != 1)
        if (errno != EINTR) die("passing the tap on --fd=%d: %s", unixfd, strerror(errno));
}

int main(int argc, char **argv) {
    const char *bridge = NULL, *dir, *body, *ok, *err;
    int unixfd = -1, vnet_hdr = 0, sock, tapfd = -1, i;
    char esc[NAME_MAX_BYTES * 6 + 1], message[512];
    unsigned char frame[4 + 256];
    struct sockaddr_un addr;
    struct timespec deadline;
    size_t e = 0, k, blen;
    for (i = 0; i < 3; i++) /* keep fds 0-2 taken so no socket of ours lands on them */
        if (fcntl(i, F_GETFD) < 0 && open("/dev/null", O_RDWR) != i) die("cannot open /dev/null: %s", strerror(errno));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            return printf(USAGE "\nAsks vnetd ($VNET_RUNTIME_DIR/vnetd.sock, default " DEFAULT_RUNTIME_DIR "/vnetd.sock) for a tap on\n"
                          "BRIDGE and passes it on the connected unix socket UNIXFD, as qemu-bridge-helper does.\n") < 0;
        } else if (strcmp(a, "--use-vnet") == 0) {
            vnet_hdr = 1;
        } else if (strncmp(a, "--br=", 5) == 0) {
            if (bridge != NULL) die("--br given more than once");
            bridge = a + 5;
        } else if (strncmp(a, "--fd=", 5) == 0) {
            if (unixfd >= 0) die("--fd given more than once");
            unixfd = parse_fd(a + 5);
        } else {
            die("unknown option '%.64s' (" USAGE ")", a);
        }
    }
    if (bridge == NULL) die("missing --br=BRIDGE");
    if (unixfd < 0) die("missing --fd=UNIXFD");
    if (bridge[0] == '\0') die("empty bridge name");
    if (strlen(bridge) > NAME_MAX_BYTES) die("bridge name is %zu bytes, the limit is %d", strlen(bridge), NAME_MAX_BYTES);
    check_unix_socket(unixfd);
    for (k = 0; bridge[k] != '\0'; k++) { /* JSON-escape the name */
        unsigned char c = (unsigned char)bridge[k];
        if (c == '"' || c == '\\') { esc[e++] = '\\'; esc[e++] = (char)c; }
        else if (c < 0x20 || c == 0x7f) e += (size_t)snprintf(esc + e, 7, "\\u%04x", c);
        else esc[e++] = (char)c;
    }
    esc[e] = '\0';
    blen = (size_t)snprintf((char *)frame + 4, sizeof frame - 4, "{\"id\":1,\"method\":\"tap\",\"params\":{\"bridge\":\"%s\",\"vnetHdr\":%s}}",
                            esc, vnet_hdr ? "true" : "false");
    frame[0] = 0, frame[1] = 0, frame[2] = (unsigned char)(blen >> 8), frame[3] = (unsigned char)blen; /* blen < 256 */
    dir = getenv("VNET_RUNTIME_DIR");
    if (dir == NULL || dir[0] == '\0') dir = DEFAULT_RUNTIME_DIR;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/vnetd.sock", dir) >= sizeof addr.sun_path)
        die("socket path %s/vnetd.sock is too long", dir);
    if ((sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) die("socket: %s", strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += REPLY_TIMEOUT_S; /* the network may come up on demand before the reply */
    set_timeouts(sock, &deadline);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) {
        /* the same words as the CLI (src/api/client.ts) */
        if (errno == ENOENT) die("vnetd is not running (no socket at %s)", addr.sun_path);
        if (errno == ECONNREFUSED) die("vnetd is not running (nothing listens on %s)", addr.sun_path);
        die("cannot connect to vnetd at %s: %s", addr.sun_path, strerror(errno));
    }
    send_all(sock, frame, 4 + blen, &deadline);
    body = read_reply(sock, &tapfd, &deadline);
    close(sock);
    ok = jget(body, "ok");
    if (is_literal(ok, "true")) {
        if (tapfd < 0) die("vnetd replied ok but sent no tap file descriptor");
        pass_fd(unixfd, tapfd);
        return 0;
    }
    if (tapfd >= 0) close(tapfd);
    if (!is_literal(ok, "false")) die("vnetd sent a malformed reply");
    err = jget(body, "error");
    body = err != NULL ? jget(err, "message") : NULL;
    if (body == NULL || jstr(&body, message, sizeof message) < 0 || message[0] == '\0') die("vnetd refused the request");
    die("%s", message);
}
