/**
 * A FIFO mutex. `run` hands the function a Lock: functions that must only run while the mutex
 * is held take a Lock parameter, so "caller holds the mutex" is a type, not a comment.
 */
declare const held: unique symbol;

/** Proof that the caller runs inside Mutex.run; only Mutex makes one. */
export interface Lock {
  readonly [held]: true;
}

const LOCK = Object.freeze({}) as Lock;

export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: (lock: Lock) => Promise<T>): Promise<T> {
    const go = () => fn(LOCK);
    const result = this.tail.then(go, go);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
