/**
 * vnet: the command line. Parses with util.parseArgs, per command (COMMANDS in commands.ts), runs
 * the command through the typed client, and maps what went wrong to one exit code (api/errors.ts).
 * main() does not exit: bin/vnet sets the exit code once the output is written.
 */
import { parseArgs } from 'node:util';
import { call, Session } from '../api/client.js';
import { EXIT, EXIT_HELP, exitCodeOf, VnetError } from '../api/errors.js';
import { pathsFromEnv } from '../config/paths.js';
import { COMMANDS, type Command, type Ctx } from './commands.js';
import { ensureDaemon } from './start-daemon.js';

class UsageError extends Error {
  override name = 'UsageError';
}

export function usage(): string {
  const lines = COMMANDS.map((c) => `  ${c.name} ${c.args}\n      ${c.summary}`);
  return `usage: vnet COMMAND [ARGS]

commands:
${lines.join('\n')}
  help [COMMAND]
      this text

${EXIT_HELP}

environment: VNET_CONFIG_DIR (/etc/vnet), VNET_STATE_DIR (/var/lib/vnet),
             VNET_RUNTIME_DIR (/run/vnet), VNET_QEMU_CONF_DIR (/etc/qemu)
`;
}

/** The command and its parsed options and names; UsageError naming what is wrong. */
export function parse(argv: string[]): { cmd: Command; names: string[]; opts: Record<string, string | boolean | undefined> } {
  const [name, ...rest] = argv;
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) throw new UsageError(name === undefined ? 'no command given' : `unknown command ${JSON.stringify(name)}`);
  if (cmd.ownArgs) return { cmd, names: rest, opts: {} };
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: true, strict: true });
  } catch (err) {
    const m = /'(-[^']*)'/.exec((err as Error).message);
    throw new UsageError(m ? `\`vnet ${cmd.name}\` has no option ${m[1]}` : `\`vnet ${cmd.name}\`: ${(err as Error).message}`);
  }
  const names = parsed.positionals;
  const [least, most] = cmd.names;
  if (names.length < least || names.length > most) {
    const want = most === 0 ? 'takes no arguments' : least === most ? `takes ${least === 1 ? 'one network name' : `${least} arguments`}` : `takes at most ${most === 1 ? 'one network name' : `${most} arguments`}`;
    throw new UsageError(`\`vnet ${cmd.name}\` ${want}; usage: vnet ${cmd.name} ${cmd.args}`);
  }
  return { cmd, names, opts: parsed.values as Record<string, string | boolean | undefined> };
}

/** The context the real CLI runs commands in: the socket of $VNET_RUNTIME_DIR, stdout, stderr. */
export function realCtx(): Ctx {
  const paths = pathsFromEnv();
  return {
    paths,
    // tens of MB into a pipe: wait until it is written, or exiting would cut it short
    out: (text) => new Promise<void>((resolve) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`, () => resolve())),
    err: (text) => void process.stderr.write(`${text}\n`),
    call: (method, params) => call(paths.socket, method, params),
    pages: async (fn) => {
      const session = await Session.open(paths.socket);
      try {
        return await fn((method, params) => session.call(method, params));
      } finally {
        session.close();
      }
    },
    ensureDaemon: () => ensureDaemon(paths, (line) => void process.stderr.write(`${line}\n`)),
  };
}

export async function main(argv: string[], ctx: Ctx = realCtx()): Promise<number> {
  const [first, second] = argv;
  if (first === 'help' || first === '--help' || first === '-h') {
    const cmd = COMMANDS.find((c) => c.name === second);
    await ctx.out(cmd ? `usage: vnet ${cmd.name} ${cmd.args}\n  ${cmd.summary}` : usage());
    return EXIT.ok;
  }
  try {
    const { cmd, names, opts } = parse(argv);
    return await cmd.run(ctx, names, opts);
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.err(`vnet: ${err.message}\n\n${usage()}`);
      return EXIT.usage;
    }
    ctx.err(`vnet: ${err instanceof Error ? err.message : String(err)}`);
    return err instanceof VnetError ? exitCodeOf(err) : EXIT.failed;
  }
}
