import path from 'node:path';
import fc from 'fast-check';
import { isVabError } from '../../src/util/errors';
import { PARTITION_NAME_MAX, containedPath, isInside, partitionNameProblem, targetNameProblem } from '../../src/util/names';

describe('partitionNameProblem', () => {
  it.each(['system', 'vendor_dlkm', 'system_ext', 'vbmeta_system', 'boot', 'a', 'x'.repeat(PARTITION_NAME_MAX), 'my-part', 'odm.img2', '_x', '-x', '0'])('accepts %j', (name) => {
    expect(partitionNameProblem(name)).toBeUndefined();
  });

  it.each([
    ['', /empty/],
    ['.', /start with "\."/],
    ['..', /start with "\."/],
    ['.hidden', /start with "\."/],
    ['a/b', /"\/" at 1/],
    ['../../evil-escape', /start with "\."/],
    ['/tmp/evil/abs', /"\/" at 0/],
    ['sys\0tem', /U\+0000 at 3/],
    ['sys tem', /" " at 3/],
    ['système', /U\+00E8 at 4/],
    ['x'.repeat(PARTITION_NAME_MAX + 1), new RegExp(`at most ${PARTITION_NAME_MAX} characters`)],
  ])('refuses %j', (name, rule) => {
    expect(partitionNameProblem(name)).toMatch(rule);
  });

  it('agrees with the rule written as one regular expression, for any string', () => {
    const rule = new RegExp(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,${PARTITION_NAME_MAX - 1}}$`);
    fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: fc.constantFrom('a', '.', '-', '_', '/', '\0', 'Z', '9') })), (name) => {
      expect(partitionNameProblem(name) === undefined).toBe(rule.test(name));
    }));
  });
});

describe('targetNameProblem', () => {
  it('keeps the kernel rule: plain characters, at most 127, no leading "." or "-"', () => {
    expect(targetNameProblem('system_a')).toBeUndefined();
    expect(targetNameProblem('x'.repeat(127))).toBeUndefined();
    expect(targetNameProblem('x'.repeat(128))).toMatch(/at most 127/);
    expect(targetNameProblem('-x')).toMatch(/start with/);
    expect(targetNameProblem('.x')).toMatch(/start with/);
    expect(targetNameProblem('../x')).toMatch(/start with/);
    expect(targetNameProblem('a/x')).toMatch(/"\/" at 1/);
    expect(targetNameProblem('')).toMatch(/empty/);
  });
});

describe('containedPath', () => {
  const root = '/srv/out';

  it('resolves names inside the root', () => {
    expect(containedPath(root, 'system.img')).toBe('/srv/out/system.img');
    expect(containedPath(root, 'a/../b/c')).toBe('/srv/out/b/c');
    expect(containedPath(root, '..hidden')).toBe('/srv/out/..hidden');
    expect(containedPath(`${root}/`, '.')).toBe(root);
  });

  it.each([
    ['', /names nothing/],
    ['..', /leads outside/],
    ['../out2/x', /leads outside/],
    ['a/../../x', /leads outside/],
    ['/etc/passwd', /not absolute/],
    ['a\0b', /NUL/],
  ])('refuses %j with a VabError', (relative, rule) => {
    let caught: unknown;
    try {
      containedPath(root, relative);
    } catch (err) {
      caught = err;
    }
    expect(isVabError(caught, 'EINVAL_INPUT')).toBe(true);
    expect((caught as Error).message).toMatch(rule);
  });

  it('never returns a path outside the root, for any input', () => {
    const segment = fc.constantFrom('..', '.', 'a', '', 'b..', '...', '\0');
    fc.assert(fc.property(fc.array(segment, { maxLength: 8 }), fc.boolean(), (parts, leadingSlash) => {
      const relative = (leadingSlash ? '/' : '') + parts.join('/');
      let result: string | undefined;
      try {
        result = containedPath(root, relative);
      } catch (err) {
        expect(isVabError(err, 'EINVAL_INPUT')).toBe(true);
        return;
      }
      expect(result === root || result.startsWith(root + path.sep)).toBe(true);
    }));
  });
});

describe('isInside', () => {
  it('tells a path below the root from one beside or above it', () => {
    expect(isInside('/mnt/p', '/mnt/p')).toBe(true);
    expect(isInside('/mnt/p', '/mnt/p/a/b')).toBe(true);
    expect(isInside('/mnt/p', '/mnt/p/..hidden')).toBe(true);
    expect(isInside('/mnt/p', '/mnt/p2/x')).toBe(false);
    expect(isInside('/mnt/p', '/mnt')).toBe(false);
    expect(isInside('/mnt/p', '/bin/sh')).toBe(false);
  });
});
