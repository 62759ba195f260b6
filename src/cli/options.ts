import { InvalidArgumentError, Option } from 'commander';
import type { SocketTransport } from '../dmuser/socket-channel';

/** A commander option parser for non-negative integers of at least `min`; a bad value is a usage error. */
export function integer(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return n;
  };
}

/**
 * A daemon's `--transport`: how its dm-user channels move READ answers to `vab kernel`. A type-only
 * import: the CLI's start-up loads no transport code.
 */
export function transportOption(): Option {
  const choices: SocketTransport[] = ['auto', 'shared', 'plain'];
  return new Option('--transport <how>', 'dm-user transport: shared (READ answers in shared memory), plain (every byte on the socket), auto (shared when both sides can)')
    .choices(choices)
    .default('auto');
}
