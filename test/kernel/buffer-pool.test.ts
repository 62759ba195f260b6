import { BufferPool } from '../../src/kernel/buffer-pool';

describe('kernel: read buffer pool', () => {
  it('reuses a buffer given back, by power-of-two class', () => {
    const pool = new BufferPool(4096, 1 << 20, 4);
    const a = pool.take(5000);
    expect(a.length).toBe(5000);
    expect(a.buffer.byteLength).toBe(8192);
    pool.give(a.subarray(100, 200)); // any view of it
    const b = pool.take(8000);
    expect(b.buffer).toBe(a.buffer);
  });

  it('never lends one buffer twice: a double give or a foreign buffer is ignored', () => {
    const pool = new BufferPool(4096, 1 << 20, 4);
    const a = pool.take(4096);
    pool.give(a);
    pool.give(a);
    pool.give(Buffer.allocUnsafeSlow(4096));
    const first = pool.take(4096);
    const second = pool.take(4096);
    expect(first.buffer).toBe(a.buffer);
    expect(second.buffer).not.toBe(a.buffer);
  });

  it('allocates above the largest class without pooling', () => {
    const pool = new BufferPool(4096, 8192, 4);
    const big = pool.take(10000);
    pool.give(big);
    expect(pool.take(10000).buffer).not.toBe(big.buffer);
  });
});
