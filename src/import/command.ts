/**
 * `vnet import-libvirt FILE.xml|DIR|--running [--write [--force]]`: libvirt network XML →
 * vnet definitions. Without --write it prints one TOML document per network, each headed by
 * the file it would be written to, and changes nothing. With --write it writes
 * $VNET_CONFIG_DIR/networks/NAME.toml (atomically, mode 0644), refusing a file that exists
 * unless --force, and a symlink always; nothing is written when any network fails.
 * Exit codes: 0 imported, 1 something failed (named on stderr), 2 usage.
 */
import { execa } from 'execa';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { networkNameProblem } from '../config/names.js';
import { pathsFromEnv } from '../config/paths.js';
import { DEFINITION_KEYS, DefinitionError, parseDefinition } from '../spec/parse.js';
import { writeFileAtomic } from '../sys/atomic-file.js';
import { importNetwork, ImportRefused, type ImportedNetwork } from './libvirt.js';
import { show } from './node.js';
import { comment, emitDefinition } from './toml.js';
import { DEFAULT_LIMITS, parseXml, XmlError } from './xml.js';

export const IMPORT_USAGE = `usage: vnet import-libvirt FILE.xml|DIR|--running [--write [--force]]

  FILE.xml   one libvirt network definition
  DIR        every *.xml in a folder, e.g. /etc/libvirt/qemu/networks (its autostart/
             links set \`autostart\`)
  --running  the networks of the system libvirtd (virsh -c qemu:///system)
  --write    write $VNET_CONFIG_DIR/networks/NAME.toml instead of printing
  --force    with --write: replace existing files
`;

/** The most files read from one folder, and the most networks asked of libvirtd. */
const MAX_NETWORKS = 1000;
const VIRSH_URI = 'qemu:///system';

class UsageError extends Error {}

export interface Io {
  /** resolves once written: the caller may exit right after */
  out(s: string): Promise<void>;
  err(s: string): Promise<void>;
  env: NodeJS.ProcessEnv;
}

/** stdout and stderr of this process, awaited (a pipe must not be cut short by process.exit). */
export function processIo(): Io {
  const writer = (stream: NodeJS.WriteStream) => (s: string) => new Promise<void>((resolve) => stream.write(s, () => resolve()));
  return { out: writer(process.stdout), err: writer(process.stderr), env: process.env };
}

interface Source {
  /** the file, or "qemu:///system network NAME" */
  origin: string;
  bytes: Uint8Array | string;
  autostart: boolean;
  /** the name libvirt gave (with --running): the XML must agree */
  expectName?: string;
}

/** Read at most the XML size limit from a regular file; O_NONBLOCK so a FIFO cannot hang us. */
async function readBounded(file: string, noFollow: boolean): Promise<Buffer> {
  const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | (noFollow ? constants.O_NOFOLLOW : 0)).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${file}: cannot open (${err.code === 'ELOOP' ? 'a symlink; not followed in a folder' : (err.code ?? err.message)})`);
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`${file}: not a regular file`);
    if (st.size > DEFAULT_LIMITS.maxBytes) throw new Error(`${file}: ${st.size} bytes; libvirt network XML is read up to ${DEFAULT_LIMITS.maxBytes}`);
    const buf = Buffer.alloc(DEFAULT_LIMITS.maxBytes + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > DEFAULT_LIMITS.maxBytes) throw new Error(`${file}: grew past ${DEFAULT_LIMITS.maxBytes} bytes while read`);
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

/** libvirt's own layout: networks/NAME.xml is autostarted when networks/autostart/NAME.xml exists. */
async function autostartLink(file: string): Promise<boolean> {
  const st = await lstat(path.join(path.dirname(file), 'autostart', path.basename(file))).catch(() => undefined);
  return st !== undefined;
}

async function fromPath(p: string, errors: string[]): Promise<Source[]> {
  const st = await lstat(p).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${p}: ${err.code === 'ENOENT' ? 'no such file or folder' : (err.code ?? err.message)}`);
  });
  const dir = st.isDirectory() || (st.isSymbolicLink() && (await readdir(p).then(() => true, () => false)));
  if (!dir) return [{ origin: p, bytes: await readBounded(p, false), autostart: await autostartLink(p) }];
  const entries = (await readdir(p)).filter((e) => e.endsWith('.xml')).sort();
  if (entries.length > MAX_NETWORKS) throw new Error(`${p}: ${entries.length} .xml files; at most ${MAX_NETWORKS} are read`);
  const out: Source[] = [];
  for (const e of entries) {
    const file = path.join(p, e);
    try {
      out.push({ origin: file, bytes: await readBounded(file, true), autostart: await autostartLink(file) });
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (!entries.length) throw new Error(`${p}: no .xml files (libvirt keeps its networks in /etc/libvirt/qemu/networks)`);
  return out;
}

async function virsh(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const r = await execa('virsh', ['-c', VIRSH_URI, ...args], {
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
    maxBuffer: 2 * DEFAULT_LIMITS.maxBytes,
    env: { ...env, LC_ALL: 'C' },
    extendEnv: false,
  });
  if ((r as { code?: string }).code === 'ENOENT') throw new Error('virsh not found (Debian: apt install libvirt-clients)');
  if (r.exitCode !== 0) throw new Error(`virsh -c ${VIRSH_URI} ${args.join(' ')} failed: ${show(String(r.stderr || r.stdout).trim(), 300)}`);
  return String(r.stdout);
}

async function fromRunning(errors: string[], env: NodeJS.ProcessEnv): Promise<Source[]> {
  const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);
  const names = lines(await virsh(['net-list', '--all', '--name'], env));
  if (names.length > MAX_NETWORKS) throw new Error(`libvirtd lists ${names.length} networks; at most ${MAX_NETWORKS} are read`);
  const auto = new Set(lines(await virsh(['net-list', '--all', '--autostart', '--name'], env)));
  const out: Source[] = [];
  for (const name of names) {
    const origin = `${VIRSH_URI} network "${show(name)}"`;
    // checked before it goes on virsh's command line
    const p = networkNameProblem(name);
    if (p) {
      errors.push(new ImportRefused(origin, name, `the name is not a vnet network name: it ${p} (vnet does not rename networks)`).message);
      continue;
    }
    try {
      // --inactive: the persistent definition (a transient network has only its live one)
      out.push({ origin, bytes: await virsh(['net-dumpxml', '--inactive', '--network', name], env), autostart: auto.has(name), expectName: name });
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (!names.length && !errors.length) throw new Error(`libvirtd (${VIRSH_URI}) has no networks`);
  return out;
}

/** The TOML document of one imported network: where it came from and what was left behind, then the keys. */
export function document(net: ImportedNetwork): string {
  const comments = [`vnet network "${net.name}", imported by \`vnet import-libvirt\` from ${net.origin}`];
  if (net.notCarried.length) {
    comments.push('', 'Not carried over (vnet has no equivalent):');
    for (const n of net.notCarried) comments.push(`  ${n.element}: ${n.reason}`);
  }
  comments.push('');
  return emitDefinition(net.table, comments);
}

/** Keys of the definition that this vnet's parser does not know yet (other issues add them). */
function unknownKeys(net: ImportedNetwork): string[] {
  return Object.keys(net.table).filter((k) => !DEFINITION_KEYS.includes(k));
}

export async function importLibvirt(argv: string[], io: Io): Promise<number> {
  let values: { write?: boolean; force?: boolean; running?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { write: { type: 'boolean' }, force: { type: 'boolean' }, running: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }));
    if (values.help) {
      await io.out(IMPORT_USAGE);
      return 0;
    }
    if (values.running ? positionals.length !== 0 : positionals.length !== 1) throw new UsageError('give one FILE.xml or DIR, or --running');
    if (values.force && !values.write) throw new UsageError('--force only goes with --write');
  } catch (err) {
    await io.err(`vnet import-libvirt: ${(err as Error).message.split('\n')[0]!.split('. To specify')[0]}\n\n${IMPORT_USAGE}`);
    return 2;
  }

  const paths = pathsFromEnv(io.env);
  const errors: string[] = [];
  let sources: Source[];
  try {
    sources = values.running ? await fromRunning(errors, io.env) : await fromPath(positionals[0]!, errors);
  } catch (err) {
    await io.err(`vnet import-libvirt: ${(err as Error).message}\n`);
    return 1;
  }

  const nets: Array<{ net: ImportedNetwork; target: string; text: string }> = [];
  for (const src of sources) {
    try {
      const net = importNetwork(parseXml(src.bytes, src.origin), src.origin, { autostart: src.autostart });
      if (src.expectName !== undefined && net.name !== src.expectName) throw new ImportRefused(src.origin, net.name, `libvirtd listed it as "${show(src.expectName)}"`);
      const twin = nets.find((n) => n.net.name === net.name);
      if (twin) throw new ImportRefused(src.origin, net.name, `a second network of that name (the first is ${twin.net.origin})`);
      const target = path.join(paths.networksDir, `${net.name}.toml`);
      const text = document(net);
      const unknown = unknownKeys(net);
      if (unknown.length) {
        await io.err(`vnet import-libvirt: ${net.name}: not checked by vnet's parser: it does not know ${unknown.map((k) => `\`${k}\``).join(', ')} yet\n`);
      } else {
        parseDefinition(net.name, target, text);
      }
      for (const n of net.notCarried) await io.err(`vnet import-libvirt: ${net.name}: not carried: ${n.element}: ${n.reason}\n`);
      nets.push({ net, target, text });
    } catch (err) {
      if (err instanceof XmlError || err instanceof ImportRefused || err instanceof DefinitionError) errors.push(err.message);
      else throw err;
    }
  }

  if (!values.write) {
    await io.out(nets.map((n) => `${comment(`==> ${n.target} <==`)}\n${n.text}`).join('\n'));
  } else if (!errors.length) {
    await mkdir(paths.networksDir, { recursive: true, mode: 0o755 });
    for (const n of nets) {
      const st = await lstat(n.target).catch(() => undefined);
      if (st?.isSymbolicLink()) errors.push(`${n.target}: a symlink; refusing to write through it`);
      else if (st && !st.isFile()) errors.push(`${n.target}: exists and is not a regular file`);
      else if (st && !values.force) errors.push(`${n.target}: exists (--force replaces it)`);
    }
    if (!errors.length) {
      const written: string[] = [];
      for (const n of nets) {
        try {
          await writeFileAtomic(n.target, n.text, { mode: 0o644 });
        } catch (err) {
          await io.err(`vnet import-libvirt: ${(err as Error).message}${written.length ? `; written before it: ${written.join(', ')}` : '; nothing written'}\n`);
          return 1;
        }
        written.push(n.target);
        await io.out(`wrote ${n.target}\n`);
      }
      if (nets.length) await io.out('next: `vnet check`, then stop each network in libvirt (README: "Move libvirt\'s networks to vnet")\n');
    }
  }
  for (const e of errors) await io.err(`vnet import-libvirt: ${e}\n`);
  if (errors.length && values.write) await io.err('vnet import-libvirt: nothing written\n');
  return errors.length ? 1 : 0;
}
