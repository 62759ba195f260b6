import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { isVabError } from '../../src/util/errors';
import { PARTITION_NAME_MAX, partitionNameProblem } from '../../src/util/names';
import { extractPayload } from '../../src/payload/extract';
import { generatePayload } from '../../src/payload/generate';
import { inspectPayload } from '../../src/payload/inspect';
import { payloadNamed } from './support/build';
import { tempDir, writeImages } from './support/images';

/** Every file and directory under `root`, with a hash of each file's content. */
async function snapshotTree(root: string): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  const walk = async (dir: string) => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const key = path.relative(root, full);
      if (entry.isDirectory()) {
        tree[key] = 'dir';
        await walk(full);
      } else {
        tree[key] = createHash('sha256').update(await fs.readFile(full)).digest('hex');
      }
    }
  };
  await walk(root);
  return tree;
}

async function failure(work: Promise<unknown>): Promise<Error & { code?: string }> {
  return work.then(
    () => {
      throw new Error('expected a failure, got success');
    },
    (err: Error & { code?: string }) => err,
  );
}

describe('partition names from a payload never become paths outside --out', () => {
  let root: string;
  /** The output directory is two levels down, so "../../x" would land inside root, where we look. */
  let out: string;
  let caseNo = 0;

  beforeAll(async () => {
    root = await tempDir('vab-names-');
    out = path.join(root, 'out', 'a', 'b');
    await fs.mkdir(path.join(root, 'keep'), { recursive: true });
    await fs.mkdir(path.join(root, 'out'), { recursive: true });
    await fs.writeFile(path.join(root, 'keep', 'evil.img'), 'bystander');
    await fs.writeFile(path.join(root, 'out', 'system.img'), 'bystander');
  });
  afterAll(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  async function writePayload(bytes: Buffer): Promise<string> {
    const file = path.join(root, `case-${++caseNo}.bin`);
    await fs.writeFile(file, bytes);
    return file;
  }

  const badNames: Array<[string, string[], RegExp]> = [
    ['"..": parent directory', ['system', '..'], /partition 1 is named "\.\.": a partition name must not start with "\."/],
    ['"../../evil": the escape from the issue', ['../../evil'], /partition 0 is named "\.\.\/\.\.\/evil": a partition name must not start with "\."/],
    ['"a/b": a subdirectory', ['a/b'], /partition 0 is named "a\/b": .* \(found "\/" at 1\)/],
    ['an absolute path', ['/tmp/evil/abs'], /partition 0 is named "\/tmp\/evil\/abs": .* \(found "\/" at 0\)/],
    ['a NUL byte', ['sys\0tem'], /partition 0 is named "sys\\u0000tem": .* \(found U\+0000 at 3\)/],
    ['an empty name', [''], /partition 0 is named "": a partition name must not be empty/],
    ['an overlong name', ['x'.repeat(PARTITION_NAME_MAX + 1)], new RegExp(`partition 0 is named "x+": a partition name has at most ${PARTITION_NAME_MAX} characters`)],
    ['a duplicate', ['system', 'vendor', 'system'], /partition 2 is named "system": partition 0 has the same name/],
    ['names differing only in case', ['system', 'System'], /partition 1 is named "System": partition 0 is named "system", which differs only in case/],
  ];

  it.each(badNames)('%s is ECORRUPT naming the partition index and the rule, and nothing is written', async (_what, names, message) => {
    const file = await writePayload(payloadNamed(names));
    const before = await snapshotTree(root);
    const extracted = await failure(extractPayload(file, { outDir: out }));
    expect(isVabError(extracted, 'ECORRUPT')).toBe(true);
    expect(extracted.message).toMatch(message);
    expect(extracted.message).toContain(`${file} at offset 24: `);
    expect(await snapshotTree(root)).toEqual(before);
    const inspected = await failure(inspectPayload(file));
    expect(isVabError(inspected, 'ECORRUPT')).toBe(true);
    expect(inspected.message).toMatch(message);
  });

  it('valid names extract side by side, only under --out', async () => {
    const names = ['system', 'vendor_dlkm', 'odm-1', 'x'.repeat(PARTITION_NAME_MAX)];
    const file = await writePayload(payloadNamed(names));
    const before = await snapshotTree(root);
    await extractPayload(file, { outDir: out });
    const after = await snapshotTree(root);
    const added = Object.keys(after).filter((k) => !(k in before)).sort();
    expect(added).toEqual(['out/a', 'out/a/b', ...names.map((n) => `out/a/b/${n}.img`)].sort());
    for (const key of Object.keys(before)) expect(after[key]).toBe(before[key]);
    await fs.rm(path.join(root, 'out', 'a'), { recursive: true });
  });

  it('random names either extract to <out>/<name>.img or are refused; nothing else under the root changes', async () => {
    // Units chosen to hit the interesting cases often: separators, dots, NUL, non-ASCII, case.
    const unit = fc.constantFrom('a', 'B', '0', '_', '-', '.', '/', '\\', '\0', ' ', 'é', '\n', '~', '*');
    const name = fc.oneof(fc.string({ unit, maxLength: PARTITION_NAME_MAX + 2 }), fc.string({ maxLength: 8 }), fc.constantFrom('..', '.', '../x', '/x', './x', 'x/..'));
    const before = await snapshotTree(root);
    await fc.assert(
      fc.asyncProperty(name, async (candidate) => {
        const file = await writePayload(payloadNamed([candidate]));
        const result = await extractPayload(file, { outDir: out }).then(() => undefined, (err: unknown) => err);
        const valid = partitionNameProblem(candidate) === undefined;
        if (valid) expect(result).toBeUndefined();
        else expect(isVabError(result, 'ECORRUPT')).toBe(true);
        const after = await snapshotTree(root);
        await fs.rm(file);
        await fs.rm(path.join(root, 'out', 'a'), { recursive: true, force: true });
        const expected = { ...before, [path.relative(root, file)]: after[path.relative(root, file)] };
        if (valid) Object.assign(expected, { 'out/a': 'dir', 'out/a/b': 'dir', [`out/a/b/${candidate}.img`]: after[`out/a/b/${candidate}.img`] });
        expect(after).toEqual(expected);
      }),
      { numRuns: 150 },
    );
  });
});

describe('generate refuses image and partition names it could not write back safely', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('vab-names-gen-');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('an image file whose name is not a partition name', async () => {
    const target = path.join(dir, 'spaced');
    await writeImages(target, { system: Buffer.alloc(4096, 1), 'my part': Buffer.alloc(4096, 2) });
    const err = await failure(generatePayload({ targetDir: target, output: path.join(dir, 'spaced.bin') }));
    expect(isVabError(err, 'EINVAL_INPUT')).toBe(true);
    expect(err.message).toMatch(/spaced: image 0 is named "my part": .* \(found " " at 2\)/);
    await expect(fs.readdir(dir)).resolves.toEqual(['spaced']);
  });

  it('images whose names differ only in case', async () => {
    const target = path.join(dir, 'cased');
    await writeImages(target, { system: Buffer.alloc(4096, 1), System: Buffer.alloc(4096, 2) });
    const err = await failure(generatePayload({ targetDir: target, output: path.join(dir, 'cased.bin') }));
    expect(err.message).toMatch(/image 1 is named "system": image 0 is named "System", which differs only in case/);
  });

  it('a listed partition that would read outside the target directory', async () => {
    const target = path.join(dir, 'listed');
    await writeImages(target, { system: Buffer.alloc(4096, 1) });
    await writeImages(dir, { secret: Buffer.alloc(4096, 3) });
    const err = await failure(generatePayload({ targetDir: target, partitions: ['system', '../secret'], output: path.join(dir, 'listed.bin') }));
    expect(isVabError(err, 'EINVAL_INPUT')).toBe(true);
    expect(err.message).toMatch(/partition 1 of the list is named "\.\.\/secret": a partition name must not start with "\."/);
    await expect(fs.stat(path.join(dir, 'listed.bin'))).rejects.toThrow(/ENOENT/);
  });
});
