/*
 * handoff: time a bridge helper's tap hand-off exactly as QEMU sees it.
 *
 *   handoff HELPER BRIDGE N [--samples] [--close-each | --hold]
 *
 * N times: socketpair(AF_UNIX, SOCK_STREAM), fork; the child closes every fd but 0-2 and its end and
 * execs `HELPER --use-vnet --fd=FD --br=BRIDGE` (through /bin/sh -c when HELPER contains a space or tab,
 * as QEMU's net/tap.c does); the parent receives the 1-byte message with its SCM_RIGHTS fd, checks with
 * TUNGETIFF that it is a tap and reaps the child. The clock runs from socketpair() to waitpid(), as long as
 * QEMU waits. Closing a tap destroys it (about 17 ms of kernel work under the RTNL lock) and is not timed.
 *
 * Like QEMU, which holds its tap while the VM runs, handoff holds each tap until the next hand-off has
 * been timed, then closes it. With --close-each it closes each tap as soon as it has checked it; then a
 * helper whose supplier keeps a copy of the fd a moment longer (vnetd closes its copy right after
 * sendmsg, but can be preempted by the woken helper) may leave the supplier with the last reference,
 * and the destruction runs there, overlapping and delaying the next hand-off.
 *
 * With --hold it keeps every tap (N live taps, as N VMs would), prints its line, then waits for its
 * standard input to end before it closes them and exits (raising its fd limit to the hard one first).
 *
 * Prints one JSON line: {"helper","bridge","n","ok","failed","min_ms","p50_ms","p90_ms","max_ms"}, and with
 * --samples also "samples_ms": every successful hand-off's time in the order they ran, and "start_ms": when
 * each began on CLOCK_MONOTONIC (comparable across processes); always "t0_epoch_ms", the wall-clock time
 * (CLOCK_REALTIME) just before the first one. Exit status 0 when every hand-off succeeded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Receive QEMU's way: one recvmsg of up to 1 byte plus one fd. Returns the fd or -1. */
static int recv_fd(int sock) {
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    char byte;
    struct iovec iov = { &byte, 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct cmsghdr *c;
    ssize_t n;
    int fd = -1;
    do n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n != 1 || byte != 0) {
        fprintf(stderr, "handoff: expected 1 byte 0x00, got %zd bytes\n", n);
        return -1;
    }
    for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    if (fd < 0) fprintf(stderr, "handoff: no fd with the message\n");
    return fd;
}

static void child(const char *helper, const char *bridge, int fd) {
    char fdarg[32], brarg[64], *cmd;
    snprintf(fdarg, sizeof fdarg, "--fd=%d", fd);
    snprintf(brarg, sizeof brarg, "--br=%s", bridge);
    if (close_range(3, (unsigned)fd - 1, 0) < 0 || close_range((unsigned)fd + 1, ~0U, 0) < 0) _exit(126);
    if (strpbrk(helper, " \t") != NULL) {
        if (asprintf(&cmd, "%s --use-vnet %s %s", helper, fdarg, brarg) < 0) _exit(126);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    } else {
        execl(helper, helper, "--use-vnet", fdarg, brarg, (char *)NULL);
    }
    _exit(127);
}

int main(int argc, char **argv) {
    const char *helper, *bridge;
    double *t, *sorted, *t0;
    long n, i, ok = 0, failed = 0;
    int samples = 0, close_each = 0, hold = 0, held = -1, a;
    double t0_epoch;
    struct timespec rt;
    for (a = 4; a < argc; a++) {
        if (strcmp(argv[a], "--samples") == 0) samples = 1;
        else if (strcmp(argv[a], "--close-each") == 0) close_each = 1;
        else if (strcmp(argv[a], "--hold") == 0) hold = 1;
        else break;
    }
    if (argc < 4 || a < argc || (close_each && hold) || (n = strtol(argv[3], NULL, 10)) < 1 || n > 1000000) {
        fprintf(stderr, "usage: handoff HELPER BRIDGE N [--samples] [--close-each | --hold]\n");
        return 2;
    }
    helper = argv[1];
    bridge = argv[2];
    if ((t = calloc((size_t)n, sizeof *t)) == NULL || (sorted = calloc((size_t)n, sizeof *sorted)) == NULL ||
        (t0 = calloc((size_t)n, sizeof *t0)) == NULL)
        return 2;
    if (hold) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    clock_gettime(CLOCK_REALTIME, &rt); /* to line up with other processes' wall-clock logs */
    t0_epoch = (double)rt.tv_sec * 1e3 + (double)rt.tv_nsec / 1e6;
    for (i = 0; i < n; i++) {
        int sv[2], status, fd;
        struct ifreq ifr;
        pid_t pid;
        double start = now_ms();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) { perror("handoff: socketpair"); return 2; }
        if ((pid = fork()) < 0) { perror("handoff: fork"); return 2; }
        if (pid == 0) {
            if (fcntl(sv[1], F_SETFD, 0) < 0) _exit(126); /* the helper's end survives exec */
            child(helper, bridge, sv[1]);
        }
        close(sv[1]);
        fd = recv_fd(sv[0]);
        close(sv[0]);
        memset(&ifr, 0, sizeof ifr);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        t0[ok] = start;
        t[ok] = now_ms() - start; /* QEMU goes on once it has the fd and the helper's exit status */
        if (fd >= 0 && (ioctl(fd, TUNGETIFF, &ifr) < 0 || !(ifr.ifr_flags & IFF_TAP))) {
            fprintf(stderr, "handoff: the received fd is not a tap\n");
            close(fd);
            fd = -1;
        }
        if (fd >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
        else failed++;
        if (hold) continue; /* every VM keeps its tap */
        /* the tap goes away with its last fd (that is VM shutdown): not timed */
        if (held >= 0) close(held);
        held = -1;
        if (fd >= 0 && close_each) close(fd);
        else held = fd;
    }
    if (held >= 0) close(held);
    memcpy(sorted, t, (size_t)ok * sizeof *t);
    if (ok > 0) qsort(sorted, (size_t)ok, sizeof *sorted, cmp);
    printf("{\"helper\":");
    json_str(helper);
    printf(",\"bridge\":");
    json_str(bridge);
    printf(",\"n\":%ld,\"ok\":%ld,\"failed\":%ld,\"t0_epoch_ms\":%.3f", n, ok, failed, t0_epoch);
    if (ok > 0)
        printf(",\"min_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"max_ms\":%.3f", sorted[0], sorted[(ok - 1) / 2], sorted[(ok * 9 - 1) / 10],
               sorted[ok - 1]);
    if (samples) {
        printf(",\"samples_ms\":[");
        for (i = 0; i < ok; i++) printf("%s%.3f", i ? "," : "", t[i]);
        printf("],\"start_ms\":[");
        for (i = 0; i < ok; i++) printf("%s%.3f", i ? "," : "", t0[i]);
        printf("]");
    }
    printf("}\n");
    if (hold) {
        char buf[64];
        fflush(stdout);
        for (;;) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EINTR)) break;
        }
    }
    free(t0);
    free(t);
    free(sorted);
    return failed == 0 ? 0 : 1;
}
