#!/usr/bin/python3
"""Back-to-back tap requests straight on vnetd's socket, as fast as one client can go.

    tap-loop.py SPEC_JSON

SPEC: {"socket": path, "bridge": "virbr0", "n": 200, "hold": false}

n times: connect, ask for a tap on `bridge`, receive the reply and its fd, check with
TUNGETIFF that the fd is a tap, and close it at once (hold: keep every tap open until
stdin closes). A QEMU that starts and stops VMs in a loop does the same, only slower.

Prints {"done": {"n", "ok", "failed", "errors": {message: count}, "seconds"}} and, with hold,
waits for stdin to close before it closes the taps and exits.
"""
import fcntl, json, os, socket, struct, sys, time

TUNGETIFF = 0x800454D2
spec = json.loads(sys.argv[1])
BODY = json.dumps({'id': 1, 'method': 'tap', 'params': {'bridge': spec['bridge'], 'vnetHdr': True}}).encode()
REQUEST = struct.pack('>I', len(BODY)) + BODY


def recv_reply(s):
    """One reply frame and the fds that came with it."""
    data, fds = b'', []
    while len(data) < 4 or len(data) < 4 + struct.unpack('>I', data[:4])[0]:
        chunk, got, _flags, _addr = socket.recv_fds(s, 65536, 4)
        if not chunk:
            raise OSError('vnetd closed the connection before replying')
        data += chunk
        fds += got
    return json.loads(data[4:]), fds


def one():
    """Returns (tap fd or None, error message or None)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(30)
        s.connect(spec['socket'])
        s.sendall(REQUEST)
        reply, fds = recv_reply(s)
    except OSError as e:
        return None, 'client: ' + str(e)
    finally:
        s.close()
    for extra in fds[1:]:
        os.close(extra)
    fd = fds[0] if fds else None
    if not reply.get('ok'):
        if fd is not None:
            os.close(fd)
        return None, reply['error']['message']
    if fd is None:
        return None, 'client: the reply carried no fd'
    fcntl.ioctl(fd, TUNGETIFF, bytearray(40))
    return fd, None


def main():
    held, errors, ok = [], {}, 0
    t0 = time.monotonic()
    for _ in range(spec['n']):
        fd, err = one()
        if err is not None:
            errors[err] = errors.get(err, 0) + 1
            continue
        ok += 1
        if spec.get('hold'):
            held.append(fd)
        else:
            os.close(fd)
    done = {'n': spec['n'], 'ok': ok, 'failed': spec['n'] - ok, 'errors': errors, 'seconds': round(time.monotonic() - t0, 3)}
    print(json.dumps({'done': done}), flush=True)
    if spec.get('hold'):
        sys.stdin.read()
        for fd in held:
            os.close(fd)


main()
