/**
 * The one error type of vnet's API, with a code from one union, mapped once to what each front
 * says: the socket protocol carries the code, D-Bus an error name, the CLI an exit code.
 *
 * Exit codes: 0 ok, 1 failed, 2 usage, 3 permission denied, 4 unknown network, 5 busy (or a
 * change that cannot apply live), 6 vnetd unreachable. `vnet doctor`: 0 nothing wrong, 1 something
 * wrong (vnetd unreachable is one of its findings there, not exit 6).
 */

export const EXIT = { ok: 0, failed: 1, usage: 2, denied: 3, unknown: 4, busy: 5, unreachable: 6 } as const;

interface CodeInfo {
  /** the last element of the D-Bus error name, org.vnet.Vnet1.Error.NAME */
  dbus: string;
  exit: (typeof EXIT)[keyof typeof EXIT];
  /** a request refused as not allowed or malformed: logged, rate-limited per uid (others are answers, not events) */
  refusal: boolean;
}

const CODES = {
  EINVAL: { dbus: 'InvalidArgument', exit: EXIT.failed, refusal: true },
  EPERM: { dbus: 'PermissionDenied', exit: EXIT.denied, refusal: true },
  EACCES: { dbus: 'AccessDenied', exit: EXIT.denied, refusal: true },
  ENOENT: { dbus: 'UnknownNetwork', exit: EXIT.unknown, refusal: false },
  EBUSY: { dbus: 'Busy', exit: EXIT.busy, refusal: false },
  /** a change to a running network that the kernel cannot take without taking it down */
  ENOTLIVE: { dbus: 'NotLive', exit: EXIT.busy, refusal: false },
  EEXIST: { dbus: 'AlreadyExists', exit: EXIT.failed, refusal: false },
  EADDRINUSE: { dbus: 'AddressInUse', exit: EXIT.failed, refusal: false },
  ENETDOWN: { dbus: 'NetworkDown', exit: EXIT.failed, refusal: false },
  ENODEV: { dbus: 'NoSuchDevice', exit: EXIT.failed, refusal: false },
  EDQUOT: { dbus: 'QuotaExceeded', exit: EXIT.failed, refusal: true },
  EUSERS: { dbus: 'TooManyClients', exit: EXIT.failed, refusal: true },
  ENOSYS: { dbus: 'NotSupported', exit: EXIT.failed, refusal: true },
  EPROTO: { dbus: 'ProtocolError', exit: EXIT.failed, refusal: true },
  EMSGSIZE: { dbus: 'TooLarge', exit: EXIT.failed, refusal: true },
  EIO: { dbus: 'Failed', exit: EXIT.failed, refusal: false },
  // what a client says when it cannot get an answer
  ENOTRUNNING: { dbus: 'NotRunning', exit: EXIT.unreachable, refusal: false },
  ETIMEDOUT: { dbus: 'TimedOut', exit: EXIT.unreachable, refusal: false },
  ECONNRESET: { dbus: 'Failed', exit: EXIT.unreachable, refusal: false },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(CODES, code);
}

export class VnetError extends Error {
  override name = 'VnetError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Any error as a VnetError: its own code when it has one of ours, else EIO with its message. */
export function toVnetError(err: unknown): VnetError {
  if (err instanceof VnetError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new VnetError('EIO', message, { cause: err });
}

export function dbusErrorName(code: string): string {
  return `org.vnet.Vnet1.Error.${isErrorCode(code) ? CODES[code].dbus : 'Failed'}`;
}

/** The code a D-Bus error name stands for (EIO for one that is not vnet's). */
export function codeOfDbusName(name: string): ErrorCode {
  const last = name.startsWith('org.vnet.Vnet1.Error.') ? name.slice('org.vnet.Vnet1.Error.'.length) : '';
  return (Object.keys(CODES) as ErrorCode[]).find((c) => CODES[c].dbus === last) ?? 'EIO';
}

export function exitCodeOf(err: unknown): number {
  return err instanceof VnetError ? CODES[err.code].exit : EXIT.failed;
}

export function isRefusal(code: string): boolean {
  return isErrorCode(code) && CODES[code].refusal;
}

/** For `vnet help`: the exit codes and what they mean. */
export const EXIT_HELP = `exit codes: 0 ok, 1 failed, 2 usage, 3 permission denied, 4 unknown network,
            5 busy (or a change that cannot apply live), 6 vnetd unreachable;
            vnet doctor: 0 nothing wrong, 1 something wrong (an error or a warning)`;
