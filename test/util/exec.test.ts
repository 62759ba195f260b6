import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, runChecked, start } from '../../src/util/exec';

/** The one child-process helper: output, lines, timeouts, stop escalation, extra descriptors. */
describe('run', () => {
  it('collects stdout, stderr and the exit code, and feeds stdin', async () => {
    const result = await run('sh', ['-c', 'cat; echo oops >&2; exit 3'], { input: 'hello\n' });
    expect(result).toMatchObject({ code: 3, signal: null, stdout: 'hello\n', stderr: 'oops\n', timedOut: false });
  });

  it('fails with the command named when it cannot start', async () => {
    await expect(run('/nonexistent/tool', [])).rejects.toMatchObject({ code: 'EIO', message: expect.stringMatching(/cannot run \/nonexistent\/tool: .*ENOENT/) });
  });

  it('kills a child that outlives its timeout, no earlier', async () => {
    const result = await run('sleep', ['30'], { timeoutMs: 300 });
    expect(result).toMatchObject({ code: null, signal: 'SIGKILL', timedOut: true });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(290);
    expect(result.elapsedMs).toBeLessThan(20_000);
  });

  it('runChecked turns a failure into an error carrying stderr', async () => {
    await expect(runChecked('sh', ['-c', 'echo broken >&2; exit 2'])).rejects.toThrow(/sh -c .* exited with 2: broken/);
    await expect(runChecked('true', [])).resolves.toMatchObject({ code: 0 });
  });
});

describe('start', () => {
  it('waits for a line by regex, substring or predicate, and keeps every line', async () => {
    const child = start('sh', ['-c', 'echo one; sleep 0.2; printf "two\\nthree"; sleep 0.2; echo " and more"']);
    expect(await child.waitForLine(/^t/)).toBe('two');
    expect(await child.waitForLine('more')).toBe('three and more');
    expect(await child.waitForLine((line) => line.length === 3)).toBe('one');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.lines).toEqual(['one', 'two', 'three and more']);
  });

  it('fails a wait when the child exits without the line, or when time runs out', async () => {
    const quitter = start('sh', ['-c', 'echo nope; echo why >&2; exit 4'], { label: 'quitter' });
    await expect(quitter.waitForLine('ready')).rejects.toMatchObject({ code: 'ESTATE', message: expect.stringMatching(/quitter exited with 4 before .*ready.*why/) });
    const slow = start('sleep', ['30']);
    try {
      await expect(slow.waitForLine('ready', 200)).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    } finally {
      await slow.stop();
    }
    const missing = start('/nonexistent/tool', []);
    await expect(missing.waitForLine('x')).rejects.toThrow(/could not start: .*ENOENT/);
    expect(await missing.exited).toEqual({ code: null, signal: null });
  });

  it('stops with SIGTERM, escalating to SIGKILL after the grace period', async () => {
    const polite = start('sleep', ['30']);
    expect(await polite.stop()).toEqual({ code: null, signal: 'SIGTERM' });
    const stubborn = start('sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 0.1; done']);
    await stubborn.waitForLine('ready');
    const began = performance.now();
    expect(await stubborn.stop('SIGTERM', 300)).toEqual({ code: null, signal: 'SIGKILL' });
    expect(performance.now() - began).toBeGreaterThanOrEqual(290);
    expect(await stubborn.stop()).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('gives the child extra descriptors: a pipe, or a file of this process', async () => {
    const piped = start('sh', ['-c', 'echo 50 >&3; echo 100 >&3; echo done'], { extraFds: ['pipe'] });
    let progress = '';
    piped.fd(3).setEncoding('utf8').on('data', (text: string) => (progress += text));
    await piped.exited;
    expect(progress).toBe('50\n100\n');
    expect(piped.lines).toEqual(['done']);
    expect(() => piped.fd(4)).toThrow(/no pipe on fd 4/);

    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-exec-'));
    const file = await fs.open(path.join(dir, 'out'), 'w');
    try {
      expect((await run('sh', ['-c', 'echo through fd 3 >&3'], { extraFds: [file.fd] })).code).toBe(0);
    } finally {
      await file.close();
    }
    expect(await fs.readFile(path.join(dir, 'out'), 'utf8')).toBe('through fd 3\n');
    await fs.rm(dir, { recursive: true });
  });

  it('keeps only the newest output of a long-running child when asked; run keeps everything', async () => {
    const chatty = start('sh', ['-c', 'echo 0123456789abcdef; echo done'], { maxOutput: 8 });
    await chatty.exited;
    expect(chatty.stdout).toBe('ef\ndone\n');
    expect(chatty.lines).toEqual(['0123456789abcdef', 'done']);
    const big = await run('head', ['-c', String(3 << 20), '/dev/zero']);
    expect(big.stdout.length).toBe(3 << 20);
  });

  it('ends even when a grandchild keeps its stdout open', async () => {
    const child = start('sh', ['-c', 'sleep 30 & echo $!']);
    const exit = await child.exited;
    const grandchild = Number(child.lines[0]);
    try {
      expect(exit).toEqual({ code: 0, signal: null });
    } finally {
      process.kill(grandchild, 'SIGKILL');
    }
  });

  it('signals a whole process group, also after the leader exited', async () => {
    const leader = start('sh', ['-c', 'sleep 30 & echo $!; sleep 30'], { newProcessGroup: true });
    const grandchild = Number(await leader.waitForLine(/^\d+$/));
    expect(alive(grandchild)).toBe(true);
    leader.signal('SIGKILL');
    await leader.exited;
    // The leader is gone; only the group signal still reaches what it left behind.
    expect(alive(grandchild)).toBe(true);
    expect(leader.signalGroup('SIGKILL')).toBe(true);
    await waitUntil(() => !alive(grandchild));
    // Once init has reaped it the group is empty, and that is reported rather than thrown.
    await waitUntil(() => !leader.signalGroup('SIGKILL'));
    expect(() => start('true', []).signalGroup('SIGTERM')).toThrow(/not started in its own process group/);
  });
});

/** Running and not a zombie: a killed grandchild is reaped by init, not by us. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !/^\d+ \(.*\) Z/.test(readStat(pid));
}

function readStat(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return '';
  }
}

async function waitUntil(done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
