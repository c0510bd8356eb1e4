/**
 * libvirt under test, never touching the host: libvirtd and virsh run in a network namespace of their
 * own and a private mount namespace where /etc and /var are overlays (their upper layers in the
 * bench's temp folder) and /run is a fresh tmpfs (no host D-Bus, no host libvirt socket). The
 * accounts Debian's libvirt-daemon-system would create (libvirt-qemu, libvirt-dnsmasq, group kvm)
 * are added to the overlay's /etc/passwd and /etc/group only; /etc/qemu/bridge.conf there says
 * `allow all` for the stock qemu-bridge-helper. A holder process keeps the mount namespace; every
 * command enters it with nsenter. Everything is killed by pid at cleanup.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { addNamespace, alive, made, now, run, start, terminate, until } from './proc.mjs';
import { HANDOFF, STOCK_HELPER } from './vnet.mjs';

const SETUP = [
  'set -e',
  'mount -n -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc-upper,workdir=$1/etc-work" /etc',
  'mount -n -t overlay overlay -o "lowerdir=/var,upperdir=$1/var-upper,workdir=$1/var-work" /var',
  'mount -n -t tmpfs bench-run /run',
  'grep -q "^libvirt-qemu:" /etc/passwd || echo "libvirt-qemu:x:64055:64055:libvirt (bench):/var/lib/libvirt:/usr/sbin/nologin" >> /etc/passwd',
  'grep -q "^libvirt-dnsmasq:" /etc/passwd || echo "libvirt-dnsmasq:x:64056:64056:libvirt dnsmasq (bench):/var/lib/libvirt/dnsmasq:/usr/sbin/nologin" >> /etc/passwd',
  'for g in libvirt-qemu:64055 libvirt-dnsmasq:64056 kvm:64057; do grep -q "^${g%%:*}:" /etc/group || echo "${g%%:*}:x:${g#*:}:" >> /etc/group; done',
  'mkdir -p /etc/qemu && echo "allow all" > /etc/qemu/bridge.conf',
  'echo ready',
  'exec sleep 86400',
].join('\n');

export class Libvirt {
  constructor(benchDir) {
    this.dir = path.join(benchDir, 'libvirt');
    this.ns = `vnbench-${process.pid}-lv`;
    for (const d of ['etc-upper', 'etc-work', 'var-upper', 'var-work', 'xml']) mkdirSync(path.join(this.dir, d), { recursive: true });
  }

  async setup() {
    await addNamespace(this.ns);
    const holder = start('ip', ['netns', 'exec', this.ns, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', SETUP, 'sh', this.dir]);
    await until('the libvirt mount namespace', () => holder.out.includes('ready') || holder.exitCode !== null, 10_000, 10);
    if (!holder.out.includes('ready')) throw new Error(`bench: libvirt namespace: ${holder.out}`);
    this.holder = holder.pid; // ip netns exec, unshare and sh exec in turn: this pid is the holder's
    made.onCleanup.push(() => this.stopDaemon());
    const v = await run('libvirtd', ['--version']);
    this.version = v.stdout.trim().split(/\s+/).pop();
  }

  /** cmd in libvirt's network and mount namespaces. */
  exec(cmd, args, opts = {}) {
    return run('nsenter', ['-t', String(this.holder), '-m', '-n', cmd, ...args], opts);
  }

  get socketPath() {
    return `/proc/${this.holder}/root/run/libvirt/libvirt-sock`;
  }

  /** Start libvirtd (as Debian's unit does, `--timeout` when given); ms until its socket exists. */
  async startDaemon(extra = []) {
    const t0 = now();
    // nsenter execs libvirtd (no pid namespace to enter, so no fork): this pid is libvirtd's
    this.daemon = start('nsenter', ['-t', String(this.holder), '-m', '-n', 'libvirtd', ...extra]);
    await until('libvirtd’s socket', () => existsSync(this.socketPath) || this.daemon.exitCode !== null, 30_000, 2);
    if (this.daemon.exitCode !== null) throw new Error(`bench: libvirtd exited: ${this.daemon.out.slice(-2000)}`);
    return now() - t0;
  }

  get pid() {
    return this.daemon && this.daemon.exitCode === null ? this.daemon.pid : undefined;
  }

  async stopDaemon() {
    const pid = this.pid;
    if (pid) await terminate(new Set([pid]));
    this.daemon = undefined;
  }

  /** virsh on libvirtd's system URI; {ms, stdout}. */
  virsh(args, opts = {}) {
    return this.exec('virsh', ['-q', '-c', 'qemu:///system', ...args], opts);
  }

  /** A NAT network with DHCP over the whole /24 but the host's address, as libvirt's default. */
  async define(name, bridge, cidr) {
    const [a, b, c] = cidr.split('.');
    const xml = [
      '<network>',
      `  <name>${name}</name>`,
      "  <forward mode='nat'/>",
      `  <bridge name='${bridge}' stp='on' delay='0'/>`,
      `  <ip address='${a}.${b}.${c}.1' netmask='255.255.255.0'>`,
      `    <dhcp><range start='${a}.${b}.${c}.2' end='${a}.${b}.${c}.254'/></dhcp>`,
      '  </ip>',
      '</network>',
    ].join('\n');
    const file = path.join(this.dir, 'xml', `${name}.xml`);
    writeFileSync(file, xml);
    // libvirtd's first start defines (and marks autostart) a `default` network of its own: ours replaces it
    await this.virsh(['net-destroy', name], { check: false });
    await this.virsh(['net-undefine', name], { check: false });
    await this.virsh(['net-define', file]);
  }

  /** n hand-offs by the stock helper on bridge, as root, in libvirt's namespaces (build/handoff JSON). */
  async handoff(n, { bridge = 'virbr0', flags = ['--samples'] } = {}) {
    const r = await this.exec(HANDOFF, [STOCK_HELPER, bridge, String(n), ...flags]);
    return JSON.parse(r.stdout);
  }

  /** libvirt's dnsmasq processes (they daemonize: children of init, in libvirt's namespace). */
  async dnsmasqPids() {
    const r = await run('ip', ['netns', 'pids', this.ns], { check: false });
    const { commOf } = await import('./proc.mjs');
    return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((p) => commOf(p) === 'dnsmasq' && alive(p));
  }
}

/** One virsh kept open (its interactive shell on a pipe): each command timed as a client already connected sees it. */
export class VirshSession {
  constructor(lv) {
    this.p = start('nsenter', ['-t', String(lv.holder), '-m', '-n', 'virsh', '-c', 'qemu:///system'], { stdin: 'pipe' });
  }

  /** Run one command; {ms, out, ok}. The marker is printed by a second command whose echo differs from it. */
  async cmd(line) {
    const from = this.p.out.length;
    const t0 = now();
    this.p.stdin.write(`${line}\necho "MA" "RK"\n`);
    await until(`virsh: ${line}`, () => this.p.out.indexOf('MA RK', from) >= 0 || this.p.exitCode !== null, 120_000, 1);
    const ms = now() - t0;
    const out = this.p.out.slice(from, this.p.out.indexOf('MA RK', from));
    return { ms, out, ok: !/\berror:/.test(out) };
  }

  close() {
    this.p.stdin.end();
    return this.p.done;
  }
}
