/*
 * tap-floor: the least a bridge helper can do, for `make bench` to measure the floor of a tap
 * hand-off. Same command line as qemu-bridge-helper (`[--use-vnet] --br=BRIDGE --fd=UNIXFD`), run as
 * root, no ACL, no daemon, no library: open /dev/net/tun, TUNSETIFF (a tap, with a vnet header under
 * --use-vnet), the bridge's MTU, SIOCBRADDIF, up, then pass the fd on UNIXFD as one byte 0x00 plus
 * SCM_RIGHTS, as qemu-bridge-helper does. Built static (no dynamic loader). Not installed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    const char *bridge = NULL;
    int unixfd = -1, vnet_hdr = 0, fd, ctl, i;
    struct ifreq ifr, br;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--use-vnet") == 0) vnet_hdr = 1;
        else if (strncmp(argv[i], "--br=", 5) == 0) bridge = argv[i] + 5;
        else if (strncmp(argv[i], "--fd=", 5) == 0) unixfd = atoi(argv[i] + 5);
        else {
            fprintf(stderr, "usage: tap-floor [--use-vnet] --br=BRIDGE --fd=UNIXFD\n");
            return 2;
        }
    }
    if (bridge == NULL || unixfd < 0 || strlen(bridge) >= IFNAMSIZ) return 2;
    if ((fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0) die("open /dev/net/tun");
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
    if ((ctl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) die("socket");
    memset(&br, 0, sizeof br);
    strcpy(br.ifr_name, bridge);
    if (ioctl(ctl, SIOCGIFMTU, &br) < 0) die("SIOCGIFMTU");
    ifr.ifr_mtu = br.ifr_mtu;
    if (ioctl(ctl, SIOCSIFMTU, &ifr) < 0) die("SIOCSIFMTU");
    if (ioctl(ctl, SIOCGIFINDEX, &ifr) < 0) die("SIOCGIFINDEX");
    br.ifr_ifindex = ifr.ifr_ifindex;
    if (ioctl(ctl, SIOCBRADDIF, &br) < 0) die("SIOCBRADDIF");
    if (ioctl(ctl, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(ctl, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS");
    {
        union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
        char byte = 0;
        struct iovec iov = { &byte, 1 };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
        if (sendmsg(unixfd, &m, 0) != 1) die("sendmsg");
    }
    return 0;
}
