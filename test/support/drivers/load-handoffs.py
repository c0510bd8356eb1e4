#!/usr/bin/python3
"""Many bridge-helper hand-offs at once, each played the way QEMU plays it.

    load-handoffs.py SPEC_JSON

SPEC: {"helper": path, "runtimeDir": path, "concurrency": 30, "perUid": 4 (optional),
       "jobs": [{"uid": 1, "gid": 1, "bridge": "br0", "holdMs": 200}, ...]}

Runs inside the daemon's namespace as root. For every job: socketpair, exec
`HELPER --use-vnet --fd=N --br=BRIDGE` as uid:gid with no supplementary groups and only
that fd open (as QEMU does), receive the 1-byte message and its fd, TUNGETIFF the fd and
read the tap's master and ifindex from /sys while holding it. holdMs >= 0: keep the tap
that long; holdMs = -1: keep it until stdin closes. Just before closing it, read master
and ifindex again (a tap moved or orphaned while in use shows here).

Prints JSON lines: {"got": i, ...} when the hand-off is done (tap or refusal),
{"released": i, ...} when a held tap is closed, and last {"summary": {...}}.
"""
import fcntl, json, os, socket, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

TUNGETIFF = 0x800454D2
out_lock = threading.Lock()
stdin_closed = threading.Event()


def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + '\n')
        sys.stdout.flush()


def link_facts(tap):
    try:
        master = os.path.basename(os.readlink('/sys/class/net/%s/master' % tap))
    except OSError:
        master = None
    try:
        with open('/sys/class/net/%s/ifindex' % tap) as f:
            ifindex = int(f.read())
    except OSError:
        ifindex = None
    return master, ifindex


def run_job(spec, i, job, uid_slots):
    slot = uid_slots.get(job['uid'])
    if slot:
        slot.acquire()
    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        t0 = time.monotonic()
        cmd = [spec['helper'], '--use-vnet', '--fd=%d' % theirs.fileno(), '--br=' + job['bridge']]
        p = subprocess.Popen(
            cmd, pass_fds=[theirs.fileno()], close_fds=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, user=job['uid'], group=job.get('gid', job['uid']), extra_groups=[],
            env={'VNET_RUNTIME_DIR': spec['runtimeDir'], 'PATH': '/usr/bin:/bin'})
        theirs.close()
        ours.settimeout(60)
        fds = []
        rec = {'got': i, 'uid': job['uid'], 'bridge': job['bridge']}
        try:
            msg, fds, _f, _a = socket.recv_fds(ours, 16, 4)
            rec['byte'] = msg[0] if msg else None
        except (OSError, socket.timeout) as e:
            rec['recvError'] = str(e)
        ours.close()
        rec['stderr'] = p.stderr.read().decode('utf-8', 'replace')
        rec['exit'] = p.wait()
        rec['ms'] = round((time.monotonic() - t0) * 1000, 1)
        rec['nfds'] = len(fds)
        for extra in fds[1:]:
            os.close(extra)
        tapfd = fds[0] if fds else None
        if tapfd is not None:
            ifr = bytearray(40)
            fcntl.ioctl(tapfd, TUNGETIFF, ifr)
            rec['tap'] = ifr[:16].split(b'\0', 1)[0].decode()
            rec['master'], rec['ifindex'] = link_facts(rec['tap'])
        emit(rec)
        if tapfd is None:
            return rec
        hold = job.get('holdMs', 0)
        if hold < 0:
            stdin_closed.wait()
        elif hold > 0:
            time.sleep(hold / 1000)
        master, ifindex = link_facts(rec['tap'])
        os.close(tapfd)
        emit({'released': i, 'tap': rec['tap'], 'masterAtClose': master, 'ifindexAtClose': ifindex})
        return rec
    finally:
        if slot:
            slot.release()


def watch_stdin():
    try:
        sys.stdin.read()
    finally:
        stdin_closed.set()


def main():
    spec = json.loads(sys.argv[1])
    jobs = spec['jobs']
    uid_slots = {}
    if spec.get('perUid'):
        for j in jobs:
            uid_slots.setdefault(j['uid'], threading.Semaphore(spec['perUid']))
    threading.Thread(target=watch_stdin, daemon=True).start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=spec.get('concurrency', 20)) as pool:
        futures = [pool.submit(run_job, spec, i, j, uid_slots) for i, j in enumerate(jobs)]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as e:  # a driver bug must show, not hang
                results.append({'driverError': repr(e)})
    ok = sum(1 for r in results if r.get('tap'))
    errors = [r['driverError'] for r in results if 'driverError' in r]
    emit({'summary': {'n': len(jobs), 'ok': ok, 'refused': len(jobs) - ok - len(errors), 'driverErrors': errors,
                      'seconds': round(time.monotonic() - t0, 2)}})


main()
