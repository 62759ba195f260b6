import { containedPath, isInside } from '../../src/util/names';

describe('containedPath', () => {
  it('resolves a relative path under the root', () => {
    expect(containedPath('/mnt/p', 'postinst')).toBe('/mnt/p/postinst');
    expect(containedPath('/mnt/p/', 'bin/../bin/x')).toBe('/mnt/p/bin/x');
    expect(containedPath('/mnt/p', '..hidden')).toBe('/mnt/p/..hidden');
  });

  it.each([
    ['/bin/sh', /must be relative/],
    ['../x', /leaves \/mnt\/p/],
    ['bin/../../x', /leaves/],
    ['..', /leaves/],
    ['', /empty or contains NUL/],
    ['bin/x\0y', /empty or contains NUL/],
  ])('refuses %j', (relative, why) => {
    expect(() => containedPath('/mnt/p', relative)).toThrow(expect.objectContaining({ code: 'EINVAL_INPUT', message: expect.stringMatching(why) }));
  });
});

describe('isInside', () => {
  it('tells a path below the root from one beside or above it', () => {
    expect(isInside('/mnt/p', '/mnt/p')).toBe(true);
    expect(isInside('/mnt/p', '/mnt/p/a/b')).toBe(true);
    expect(isInside('/mnt/p', '/mnt/p2/x')).toBe(false);
    expect(isInside('/mnt/p', '/mnt')).toBe(false);
    expect(isInside('/mnt/p', '/bin/sh')).toBe(false);
  });
});
