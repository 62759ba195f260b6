import { InvalidArgumentError } from 'commander';

/** A commander option parser for non-negative integers of at least `min`; a bad value is a usage error. */
export function integer(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return n;
  };
}
