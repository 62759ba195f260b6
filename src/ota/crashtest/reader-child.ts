/**
 * A reader for the crash tests, run as its own process (never inside the process that serves the
 * block file): it reads blocks of a block file, compares each with the expected image, and reports
 * on stdout, one line per event, with its own wall-clock time so the runner can time failures:
 *
 *   ready <ms>                 opened the file, first read follows
 *   ok <count> <ms>            every 16 good reads, and after the last
 *   error <code> <offset> <ms> a read failed (EIO when the daemon is gone)
 *   mismatch <offset> <ms>     a read returned wrong bytes: always a failure
 *   done <count> <ms>
 *
 * argv: FILE EXPECTED_IMAGE seq|random SEED BLOCK_BYTES COUNT(0: until stopped) [stop-on-error]
 * Sync calls are fine here: this process serves nothing.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { Rng } from './rng';

function main(argv: string[]): number {
  const [file, expectedPath, mode, seedText, blockText, countText, stopOnError] = argv;
  const expected = readFileSync(expectedPath);
  const block = Number(blockText);
  const count = Number(countText);
  const blocks = Math.floor(expected.length / block);
  const rng = new Rng(Number(seedText));
  const out = (line: string): void => void process.stdout.write(`${line} ${Date.now()}\n`);
  const fd = openSync(file, 'r');
  const buffer = Buffer.alloc(block);
  out('ready');
  let done = 0;
  let failed = false;
  for (let i = 0; count === 0 || i < count; i++) {
    const index = mode === 'seq' ? i % blocks : rng.int(0, blocks - 1);
    const offset = index * block;
    try {
      const n = readSync(fd, buffer, 0, block, offset);
      if (n !== block || !buffer.equals(expected.subarray(offset, offset + block))) {
        out(`mismatch ${offset}`);
        failed = true;
        break;
      }
      done++;
      if (done % 16 === 0) out(`ok ${done}`);
    } catch (err) {
      out(`error ${(err as NodeJS.ErrnoException).code ?? 'UNKNOWN'} ${offset}`);
      failed = true;
      if (stopOnError === 'stop-on-error') break;
    }
  }
  closeSync(fd);
  out(`ok ${done}`);
  out(`done ${done}`);
  return failed ? 2 : 0;
}

process.exitCode = main(process.argv.slice(2));
