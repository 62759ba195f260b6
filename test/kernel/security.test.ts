import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Runtime, sh, vab } from './support/runtime';

/**
 * Issue 13: block files and sockets are root-only. Each check runs as a real unprivileged uid
 * (setpriv, nobody) in a child process, against a kernel and passthrough daemon in other children.
 */
jest.setTimeout(60_000);

const NOBODY = 'setpriv --reuid=65534 --regid=65534 --clear-groups';
const SIZE = 256 * 1024;
const GROUP = `vabread${process.pid % 100000}`;

/**
 * Node runs the probes that need a system call dd cannot make: this test's own node, which the
 * unprivileged uid must be able to execute (checked first, so a refusal is never mistaken for one).
 */
const NODE = process.execPath;

/** Connects to a unix socket: exit 0 when connected, else the errno name on stderr and exit 1. */
function connectScript(socket: string): string {
  return `${NODE} -e "require('net').connect(process.argv[1]).on('connect', () => process.exit(0)).on('error', (e) => { console.error(e.code); process.exit(1); })" ${socket}`;
}

describe('an unprivileged user', () => {
  let rt: Runtime;
  let image: string;
  let content: Buffer;
  let file: string;

  beforeAll(async () => {
    rt = await Runtime.start();
    // Let others reach the mount point: what must stop them is the block file's own mode.
    await fs.chmod(rt.dir, 0o755);
    ({ image, content, file } = await rt.createTarget('sys', SIZE));
    await rt.passthrough('sys', image);
    const probe = await sh(`${NOBODY} ${NODE} -e 0`);
    if (probe.code !== 0) throw new Error(`uid 65534 cannot run ${NODE} (${probe.stderr.trim()}): these probes need a node it may execute`);
  });
  afterAll(async () => {
    await rt?.dispose();
  });

  async function imageUnchanged(): Promise<void> {
    expect((await fs.readFile(image)).equals(content)).toBe(true);
  }

  it('sees root-only block files, sockets and directories', async () => {
    const st = await sh(`stat -c '%a %u %g' ${file} ${rt.run} ${path.join(rt.run, 'dm-user')} ${path.join(rt.run, 'kernel.sock')} ${path.join(rt.run, 'dm-user', 'sys')}`);
    expect(st.stdout.trim().split('\n')).toEqual(['600 0 0', '700 0 0', '700 0 0', '600 0 0', '600 0 0']);
  });

  it('cannot read a block file', async () => {
    const r = await sh(`${NOBODY} dd if=${file} of=/dev/null bs=4096 count=1 iflag=direct status=none`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
  });

  it('cannot write a block file, and the image is unchanged', async () => {
    const r = await sh(`${NOBODY} dd if=/dev/zero of=${file} bs=4096 count=1 oflag=direct conv=notrunc status=none`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    await imageUnchanged();
  });

  it('cannot open a block file read-write', async () => {
    const r = await sh(`${NOBODY} ${NODE} -e "require('fs').openSync(process.argv[1], 'r+')" ${file}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/EACCES: permission denied, open/);
    await imageUnchanged();
  });

  it('cannot change the mode or owner of a block file, even as root', async () => {
    expect((await sh(`chmod 666 ${file}`)).code).not.toBe(0);
    expect((await sh(`chown 65534 ${file}`)).code).not.toBe(0);
    expect((await sh(`stat -c '%a %u' ${file}`)).stdout.trim()).toBe('600 0');
  });

  it('cannot connect to the kernel control socket or a dm-user endpoint', async () => {
    for (const socket of [path.join(rt.run, 'kernel.sock'), path.join(rt.run, 'dm-user', 'sys')]) {
      const r = await sh(`${NOBODY} ${connectScript(socket)}`);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim()).toBe('EACCES');
      // The same connection as root works: the refusal is the permission, not a dead socket.
      expect(await sh(connectScript(socket))).toMatchObject({ code: 0 });
    }
  });

  it('root still reads and writes', async () => {
    const r = await sh(`dd if=${file} bs=${SIZE} count=1 iflag=direct status=none | cmp - ${image}`);
    expect(r.code).toBe(0);
  });
});

describe('--group', () => {
  let rt: Runtime | undefined;
  let gid: number;
  beforeAll(async () => {
    await sh(`groupdel ${GROUP} 2>/dev/null; groupadd ${GROUP}`);
    gid = Number((await sh(`getent group ${GROUP} | cut -d: -f3`)).stdout.trim());
  });
  afterAll(async () => {
    await rt?.dispose();
    await sh(`groupdel ${GROUP}`);
  });

  it('lets a member read (0640) and not write; others still get nothing', async () => {
    rt = await Runtime.start(['--group', GROUP]);
    await fs.chmod(rt.dir, 0o755);
    const { image, content, file } = await rt.createTarget('sys', SIZE);
    await rt.passthrough('sys', image);
    expect((await sh(`stat -c '%a %g' ${file}`)).stdout.trim()).toBe(`640 ${gid}`);
    const member = `setpriv --reuid=65534 --regid=65534 --groups=${gid}`;
    const read = await sh(`${member} dd if=${file} bs=${SIZE} count=1 iflag=direct status=none | cmp - ${image}`);
    expect(read).toMatchObject({ code: 0, stderr: '' });
    const write = await sh(`${member} dd if=/dev/zero of=${file} bs=4096 count=1 oflag=direct conv=notrunc status=none`);
    expect(write.stderr).toMatch(/Permission denied/);
    expect((await sh(`${NOBODY} dd if=${file} of=/dev/null bs=4096 count=1 status=none`)).stderr).toMatch(/Permission denied/);
    expect((await fs.readFile(image)).equals(content)).toBe(true);
  });

  it('refuses an unknown group before mounting anything', async () => {
    const r = await vab(['kernel', '--mount', '/tmp/vab-never-mounted', '--run', '/tmp/vab-never-run', '--group', 'no-such-group-vab']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no group named "no-such-group-vab"/);
  });
});

describe('the run directory', () => {
  it.each([
    ['world-writable', 0o777, /writable by every user/],
    ['group-writable', 0o775, /writable by its group/],
  ])('is refused when %s, saying why', async (_what, mode, why) => {
    const dir = await fs.mkdtemp('/tmp/vab-sec-');
    try {
      const run = path.join(dir, 'run');
      await fs.mkdir(run);
      await fs.chmod(run, mode);
      const r = await vab(['kernel', '--mount', path.join(dir, 'mnt'), '--run', run]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(why);
      expect((await sh(`grep -c ' ${dir}/mnt ' /proc/mounts`)).stdout.trim()).toBe('0');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('is refused when another user owns it', async () => {
    const dir = await fs.mkdtemp('/tmp/vab-sec-');
    try {
      const run = path.join(dir, 'run');
      await fs.mkdir(run, { mode: 0o700 });
      await fs.chown(run, 65534, 65534);
      const r = await vab(['kernel', '--mount', path.join(dir, 'mnt'), '--run', run]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/belongs to uid 65534/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
