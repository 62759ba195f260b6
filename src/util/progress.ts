import cliProgress from 'cli-progress';

/** Progress for long work: a bar on a terminal, nothing otherwise (logs and CI stay clean). */
export interface Progress {
  advance(amount: number): void;
  finish(): void;
}

export function createProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || total <= 0) return { advance: () => undefined, finish: () => undefined };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total}`, stream, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return {
    advance: (amount) => bar.increment(amount),
    finish: () => bar.stop(),
  };
}
