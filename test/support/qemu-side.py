#!/usr/bin/python3
"""Play QEMU's side of the bridge-helper protocol, for tests.

    qemu-side.py [--hold SECONDS] [--no-vnet] HELPER BRIDGE

Makes a socketpair, runs `HELPER [--use-vnet] --fd=N --br=BRIDGE` with only that fd
open besides 0-2 (as QEMU does), receives the one-byte message and its fd, asks the
kernel what the fd is (TUNGETIFF) and prints one JSON line:
  {"exit": helper exit code, "stderr": "...", "byte": 0, "tap": "tap0", "flags": 0x5002}
then keeps the tap open for --hold seconds (or until stdin closes when --hold is -1).
"""
import array, fcntl, json, os, socket, struct, subprocess, sys, time

TUNGETIFF = 0x800454D2

def main():
    args = sys.argv[1:]
    hold = 0.0
    use_vnet = True
    while args and args[0].startswith('--'):
        if args[0] == '--hold':
            hold = float(args[1]); args = args[2:]
        elif args[0] == '--no-vnet':
            use_vnet = False; args = args[1:]
        else:
            raise SystemExit('unknown option ' + args[0])
    helper, bridge = args
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    cmd = [helper] + (['--use-vnet'] if use_vnet else []) + ['--fd=%d' % theirs.fileno(), '--br=' + bridge]
    p = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs.close()
    out = {}
    ours.settimeout(60)
    try:
        msg, fds, _flags, _addr = socket.recv_fds(ours, 16, 4)
        out['byte'] = msg[0] if msg else None
        out['nfds'] = len(fds)
    except (OSError, socket.timeout) as e:
        msg, fds = b'', []
        out['recv_error'] = str(e)
    stderr = p.stderr.read().decode('utf-8', 'replace')
    out['exit'] = p.wait()
    out['stderr'] = stderr
    tapfd = fds[0] if fds else None
    for extra in fds[1:]:
        os.close(extra)
    if tapfd is not None:
        ifr = bytearray(40)
        fcntl.ioctl(tapfd, TUNGETIFF, ifr)
        out['tap'] = ifr[:16].split(b'\0', 1)[0].decode()
        out['flags'] = struct.unpack('H', ifr[16:18])[0]
    print(json.dumps(out), flush=True)
    if tapfd is not None:
        if hold < 0:
            sys.stdin.read()
        else:
            time.sleep(hold)
        os.close(tapfd)

main()
