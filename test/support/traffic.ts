/**
 * Traffic between test namespaces, seen from the far end: a TCP server that answers each
 * connection with the peer's address and port, a UDP sink that records who sent what, and the
 * clients for both. Every server is tracked by pid (cleanupAll ends it).
 */
import { execa } from 'execa';
import { trackPid, type Netns } from './netns.js';

/** A TCP server in `ns` at addr:port answering every connection with "PEERADDR PEERPORT". */
export async function echoPeer(ns: Netns, addr: string, port: number): Promise<void> {
  const server = execa('ip', ['netns', 'exec', ns.name, process.execPath, '-e',
    `require('net').createServer(s => s.end(s.remoteAddress + ' ' + s.remotePort)).listen(${port}, '${addr}', () => console.log('ready'))`], { reject: false });
  trackPid(server.pid);
  await new Promise<void>((resolve, reject) => {
    server.stdout?.once('data', () => resolve());
    server.once('exit', () => reject(new Error(`echo server in ${ns.name} exited`)));
  });
}

/** A UDP server in `ns` at addr:port; returns what it received so far, one "PEERADDR MESSAGE" a datagram. */
export async function udpSink(ns: Netns, addr: string, port: number): Promise<() => string[]> {
  const server = execa('ip', ['netns', 'exec', ns.name, process.execPath, '-e',
    `const s = require('dgram').createSocket('udp4');
     s.on('message', (m, r) => console.log(r.address + ' ' + m));
     s.bind(${port}, '${addr}', () => console.log('ready'));`], { reject: false, buffer: false });
  trackPid(server.pid);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    server.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    server.once('exit', () => reject(new Error(`udp sink in ${ns.name} exited`)));
  });
  return () => out.split('\n').slice(1).filter(Boolean);
}

export async function sendUdp(from: Netns, addr: string, port: number, message: string): Promise<void> {
  await from.tryRun(process.execPath, ['-e', `const s = require('dgram').createSocket('udp4'); s.send('${message}', ${port}, '${addr}', () => s.close());`]);
}

/** Connect from `from` to addr:port; what the server saw ("ADDR PORT"), or undefined when no connection was made. */
export async function peerSeen(from: Netns, addr: string, port: number): Promise<string | undefined> {
  const r = await from.tryRun(process.execPath, ['-e',
    `const s = require('net').connect({ host: '${addr}', port: ${port} });
     let d = ''; s.on('data', c => d += c); s.on('end', () => console.log(d));
     s.on('error', e => { console.error(e.message); process.exit(1); });
     setTimeout(() => { console.error('timeout'); process.exit(1); }, 3000).unref();`]);
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

export const ping = async (from: Netns, to: string): Promise<boolean> => (await from.tryRun('busybox', ['ping', '-c', '1', '-W', '2', to])).exitCode === 0;
