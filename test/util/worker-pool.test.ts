import { run } from '../../src/util/exec';
import { VabError } from '../../src/util/errors';
import { WorkerPool } from '../../src/util/worker-pool';

const JOB = `
const { threadId } = require('worker_threads');
async function job({ op, data, ms }) {
  if (op === 'double') {
    const out = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = data[i] * 2;
    return { reply: { out, threadId }, transfer: [out.buffer] };
  }
  if (op === 'wait') {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return { reply: { threadId } };
  }
  if (op === 'corrupt') throw Object.assign(new Error('bad bytes'), { code: 'ECORRUPT' });
  if (op === 'odd') throw Object.assign(new Error('no such thing'), { code: 'ENOPE' });
  if (op === 'die') process.exit(3);
  return { reply: { prefix: workerData.prefix + op } };
}
`;

describe('WorkerPool', () => {
  let pools: WorkerPool[] = [];
  const make = (threads: number, workerData: unknown = { prefix: '' }) => {
    const pool = new WorkerPool({ name: 'test', threads, source: JOB, workerData });
    pools.push(pool);
    return pool;
  };
  afterEach(async () => {
    await Promise.all(pools.map((p) => p.close()));
    pools = [];
  });

  it('runs jobs on its threads, moving transferred buffers both ways', async () => {
    const pool = make(2);
    const input = new Uint8Array([1, 2, 3]);
    const reply = await pool.run<{ out: Uint8Array }>({ op: 'double', data: input }, [input.buffer]);
    expect(Array.from(reply.out)).toEqual([2, 4, 6]);
    expect(input.byteLength).toBe(0); // moved to the thread
  });

  it('spreads concurrent jobs over the threads', async () => {
    const pool = make(2);
    const replies = await Promise.all([1, 2, 3, 4].map(() => pool.run<{ threadId: number }>({ op: 'wait', ms: 50 })));
    expect(new Set(replies.map((r) => r.threadId)).size).toBe(2);
  });

  it('has no shared state: each pool has its own threads and data', async () => {
    const a = make(1, { prefix: 'a:' });
    const b = make(1, { prefix: 'b:' });
    expect(await a.run({ op: 'x' })).toEqual({ prefix: 'a:x' });
    expect(await b.run({ op: 'x' })).toEqual({ prefix: 'b:x' });
    await a.close();
    expect(await b.run({ op: 'y' })).toEqual({ prefix: 'b:y' });
  });

  it('turns a job error into a VabError with its code (EIO for codes it does not know)', async () => {
    const pool = make(1);
    await expect(pool.run({ op: 'corrupt' })).rejects.toMatchObject({ code: 'ECORRUPT', message: 'bad bytes' });
    await expect(pool.run({ op: 'odd' })).rejects.toMatchObject({ code: 'EIO', message: 'test thread failed: no such thing' });
    expect(await pool.run({ op: 'z' })).toEqual({ prefix: 'z' }); // a failed job leaves the thread serving
  });

  it('fails waiting and later jobs when a thread dies, never leaving them hanging', async () => {
    const pool = make(2);
    const waiting = pool.run({ op: 'wait', ms: 5000 }).catch((err: unknown) => err);
    const dying = pool.run({ op: 'die' }).catch((err: unknown) => err);
    expect(await dying).toMatchObject({ code: 'EIO', message: 'test thread exited with code 3' });
    expect(await waiting).toBeInstanceOf(VabError);
    await expect(pool.run({ op: 'x' })).rejects.toMatchObject({ code: 'EIO' });
  });

  it('close rejects waiting and later jobs with ESTATE', async () => {
    const pool = make(1);
    const waiting = pool.run({ op: 'wait', ms: 5000 }).catch((err: unknown) => err);
    await pool.close();
    expect(await waiting).toMatchObject({ code: 'ESTATE', message: 'the test pool is closed' });
    await expect(pool.run({ op: 'x' })).rejects.toMatchObject({ code: 'ESTATE' });
  });

  it('does not keep a process alive once its jobs are done, even unclosed', async () => {
    const script = `
      const { WorkerPool } = require(${JSON.stringify(require.resolve('../../dist/src/util/worker-pool'))});
      const pool = new WorkerPool({ name: 't', threads: 2, source: 'async function job() { return { reply: 42 }; }' });
      pool.run({}).then((r) => console.log('reply', r));`;
    const result = await run(process.execPath, ['-e', script], { timeoutMs: 20_000 });
    expect(result.signal).toBeNull();
    expect(result.stdout.trim()).toBe('reply 42');
    expect(result.code).toBe(0);
  });

  it('refuses a pool without threads', () => {
    expect(() => new WorkerPool({ name: 't', threads: 0, source: JOB })).toThrow(RangeError);
  });
});
