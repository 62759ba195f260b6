import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { SnapuserdBackend } from '../../src/snapuserd/control/backend';
import { SnapuserdClient } from '../../src/snapuserd/control/client';
import type { MergeStatusString } from '../../src/snapuserd/control/protocol';
import { ControlServer, startControlServer } from '../../src/snapuserd/control/server';
import { VabError } from '../../src/util/errors';
import { nullLogger } from '../../src/util/log';

/**
 * The server's protocol over a real unix socket. The backend is a small in-test registry that
 * keeps init/start/delete state, so the replies depend on what was asked before.
 */
class FakeRegistry implements SnapuserdBackend {
  readonly handlers = new Map<string, { started: boolean; status: MergeStatusString }>();
  inits: string[] = [];
  percent = 0;
  paused = false;
  private idle: Array<() => void> = [];
  async init(misc: string, cow: string): Promise<number> {
    this.inits.push(misc);
    if (this.handlers.has(misc)) throw new VabError('EEXIST', `a handler for ${misc} already exists`);
    if (cow.includes('bad')) throw new VabError('ECORRUPT', `${cow}: not a COW`);
    this.handlers.set(misc, { started: false, status: 'snapshot' });
    return 2048;
  }
  async start(misc: string): Promise<void> {
    const h = this.handlers.get(misc);
    if (!h || h.started) throw new VabError('ESTATE', `cannot start ${misc}`);
    h.started = true;
  }
  async delete(misc: string): Promise<void> {
    this.handlers.delete(misc);
    if (this.handlers.size === 0) for (const wake of this.idle.splice(0)) wake();
  }
  has(misc: string): boolean {
    return this.handlers.has(misc);
  }
  isStarted(misc: string): boolean {
    return this.handlers.get(misc)?.started === true;
  }
  names(): string[] {
    return [...this.handlers.keys()];
  }
  async stopAll(): Promise<void> {
    this.handlers.clear();
  }
  whenIdle(): Promise<void> {
    return this.handlers.size === 0 ? Promise.resolve() : new Promise((resolve) => this.idle.push(resolve));
  }
  async initiateMerge(misc: string): Promise<void> {
    const h = this.handlers.get(misc);
    if (!h?.started) throw new VabError('ESTATE', `${misc} is not attached`);
    h.status = 'snapshot-merge';
  }
  mergePercent(): number {
    return this.percent;
  }
  mergeStatus(misc: string): MergeStatusString | undefined {
    return this.handlers.get(misc)?.status;
  }
  pauseMerge(): void {
    this.paused = true;
  }
  resumeMerge(): void {
    this.paused = false;
  }
}

/** A raw connection: what it sends, what comes back, whether the server hung up. */
async function raw(socketPath: string): Promise<{ send: (bytes: string | Buffer) => void; next: () => Promise<string>; closed: Promise<void>; end: () => void }> {
  const socket = net.createConnection({ path: socketPath });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const replies: string[] = [];
  const waiters: Array<(r: string) => void> = [];
  socket.on('data', (chunk: Buffer) => {
    const text = chunk.toString('latin1');
    const waiter = waiters.shift();
    if (waiter) waiter(text);
    else replies.push(text);
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => undefined);
  return {
    send: (bytes) => void socket.write(bytes),
    next: () => (replies.length > 0 ? Promise.resolve(replies.shift()!) : new Promise((resolve) => waiters.push(resolve))),
    closed,
    end: () => socket.destroy(),
  };
}

describe('snapuserd control server', () => {
  let dir: string;
  let socketPath: string;
  let backend: FakeRegistry;
  let server: ControlServer;
  let stops = 0;
  let detaches = 0;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-control-'));
    socketPath = path.join(dir, 'snapuserd.sock');
    backend = new FakeRegistry();
    stops = 0;
    detaches = 0;
    server = await startControlServer({ socketPath, backend, logger: nullLogger, onStop: () => stops++, onDetach: () => detaches++ });
  });
  afterEach(async () => {
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('is a 0600 socket', async () => {
    expect((await fs.stat(socketPath)).mode & 0o777).toBe(0o600);
  });

  it('runs a handler\'s life: init, start, getstatus, initiate_merge, merge_percent, delete', async () => {
    const c = await SnapuserdClient.connect(socketPath);
    expect(await c.send('init,sys,/d/sys.cow,/d/sys.img,/d/sys.img')).toBe('success,2048');
    expect(await c.send('init,sys,/d/sys.cow,/d/sys.img,/d/sys.img')).toBe('fail');
    expect(await c.send('initiate_merge,sys')).toBe('fail');
    expect(await c.send('update-verify')).toBe('fail');
    expect(await c.send('start,sys')).toBe('success');
    expect(await c.send('start,sys')).toBe('fail');
    expect(await c.send('update-verify')).toBe('success');
    expect(await c.send('getstatus,sys')).toBe('snapshot');
    expect(await c.send('initiate_merge,sys')).toBe('success');
    expect(await c.send('getstatus,sys')).toBe('snapshot-merge');
    backend.percent = 42.5;
    expect(await c.send('merge_percent')).toBe('42.500000');
    expect(await c.send('pause_merge')).toBe('success');
    expect(backend.paused).toBe(true);
    expect(await c.send('resume_merge')).toBe('success');
    expect(backend.paused).toBe(false);
    expect(await c.send('delete,sys')).toBe('success');
    expect(await c.send('delete,sys')).toBe('success');
    expect(await c.send('getstatus,sys')).toBe('snapshot-merge-failed');
    expect(await c.send('supports,second_stage_socket_handoff')).toBe('success');
    expect(await c.send('supports,teleport')).toBe('fail');
    c.close();
  });

  it('answers a malformed request and keeps the client; drops a client that sends an unknown one', async () => {
    const c = await raw(socketPath);
    c.send('init,sys,relative,/b,/c');
    expect(await c.next()).toBe('fail');
    c.send('getstatus');
    expect(await c.next()).toBe('snapshot-merge-failed');
    c.send('query');
    expect(await c.next()).toBe('active');
    c.send('rm -rf /');
    expect(await c.next()).toBe('fail');
    await c.closed;
    expect(backend.inits).toEqual([]);
  });

  it('refuses a request longer than 512 bytes and drops that client only', async () => {
    const other = await SnapuserdClient.connect(socketPath);
    const c = await raw(socketPath);
    c.send(`init,${'a'.repeat(600)},/a,/b,/c`);
    expect(await c.next()).toBe('fail');
    await c.closed;
    expect(await other.send('query')).toBe('active');
    other.close();
  });

  it('takes a request split across two reads as two requests, as Android does', async () => {
    const c = await raw(socketPath);
    c.send('que');
    expect(await c.next()).toBe('fail');
    await c.closed;
  });

  it('handles lines typed by a person, several in one read', async () => {
    const c = await raw(socketPath);
    c.send('query\ninit,sys,/a,/b,/c\n');
    expect((await c.next()) + (backend.handlers.has('sys') ? '' : await c.next())).toBe('activesuccess,2048');
    c.end();
  });

  it('garbage and a client gone mid-request disturb no other client', async () => {
    const clients = await Promise.all([0, 1, 2].map(() => SnapuserdClient.connect(socketPath)));
    const gone = await raw(socketPath);
    gone.send(Buffer.from([0xff, 0x00, 0x13]));
    gone.end();
    const quitter = await raw(socketPath);
    quitter.send('init,half');
    quitter.end();
    const replies = await Promise.all(clients.map((c, i) => c.send(`init,p${i},/c${i},/b,/b`)));
    expect(replies).toEqual(['success,2048', 'success,2048', 'success,2048']);
    for (const c of clients) c.close();
  });

  it('stop and detach get no reply; query then answers passive', async () => {
    const c = await raw(socketPath);
    c.send('detach');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(detaches).toBe(1);
    c.send('query');
    expect(await c.next()).toBe('passive');
    c.send('stop');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stops).toBe(1);
    c.end();
  });

  it('does not take over a socket another live daemon listens on', async () => {
    await expect(startControlServer({ socketPath, backend, logger: nullLogger, onStop: () => undefined, onDetach: () => undefined })).rejects.toThrow(/another snapuserd is listening/);
  });

  it('the client retries until the daemon listens, and times out when none does', async () => {
    const later = path.join(dir, 'later.sock');
    const connecting = SnapuserdClient.connect(later, 5000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await startControlServer({ socketPath: later, backend, logger: nullLogger, onStop: () => undefined, onDetach: () => undefined });
    const client = await connecting;
    expect(await client.send('query')).toBe('active');
    client.close();
    await second.close();
    const began = Date.now();
    await expect(SnapuserdClient.connect(path.join(dir, 'never.sock'), 400)).rejects.toThrow(/no snapuserd answered .* within 400 ms/);
    expect(Date.now() - began).toBeGreaterThanOrEqual(300);
  });
});
