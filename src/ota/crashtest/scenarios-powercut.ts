import { promises as fs } from 'node:fs';
import { createCow } from '../../cow/create';
import { mergeFiles } from '../../cow/merge';
import { MemoryFile, atEveryPowerCut } from '../../cow/testing/memory-file';
import { Figures, Scenario, check } from './scenario';

const BS = 4096;

/** OLD → NEW with shifted chains (copies reading what the next copy overwrites), a swap, zeros and new data. */
function images(blocks: number, seed: number): { oldImage: Buffer; newImage: Buffer } {
  const oldImage = Buffer.alloc(blocks * BS);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < oldImage.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    oldImage[i] = 0x61 + ((x >>> 0) % 16);
  }
  const newImage = Buffer.from(oldImage);
  const block = (img: Buffer, i: number) => img.subarray(i * BS, (i + 1) * BS);
  const chain = Math.floor(blocks * 0.7);
  for (let i = 0; i < chain; i++) block(oldImage, i + 1).copy(block(newImage, i));
  block(oldImage, chain + 1).copy(block(newImage, chain + 2));
  block(oldImage, chain + 2).copy(block(newImage, chain + 1));
  newImage.fill(0, (chain + 4) * BS, (chain + 6) * BS);
  for (let i = chain + 7; i < blocks; i++) block(newImage, i).write(`new block ${i}`, 100);
  return { oldImage, newImage };
}

/**
 * The merge with the power cut at every write and fsync in turn, each write since the last fsync
 * then kept or lost at random (from the round's seed); the merge is run again from what the disk
 * holds and must end with base == new. In memory, through the same engine the daemon runs.
 */
export const mergePowercut: Scenario = {
  name: 'merge-powercut',
  description: 'cut the power at every write/fsync of a small merge, unsynced writes kept or lost at random; resume; base == new',
  async run({ world, rng, note }): Promise<Figures> {
    const { oldImage, newImage } = images(1200, rng.int(1, 2 ** 30));
    await fs.writeFile(world.path('old.img'), oldImage);
    await fs.writeFile(world.path('new.img'), newImage);
    await createCow(world.path('old.img'), world.path('new.img'), world.path('update.cow'), { compression: 'lz4', compressionFactor: 8192, xor: true });
    const cowBytes = await fs.readFile(world.path('update.cow'));
    const whole = new MemoryFile('base', oldImage);
    await mergeFiles(new MemoryFile('cow', cowBytes), whole);
    check(whole.contents().equals(newImage), 'the uninterrupted merge did not produce the new image');
    const random = (): number => rng.next();
    const cuts = await atEveryPowerCut(
      { cow: cowBytes, base: oldImage },
      (f) => mergeFiles(f.cow, f.base),
      async (f, cut) => {
        await mergeFiles(f.cow, f.base);
        check(f.base.contents().subarray(0, newImage.length).equals(newImage), `power cut at write ${cut}: after resuming, the base is not the new image`);
      },
      () => random,
    );
    note(`${cuts} power cuts, each resumed`);
    check(cuts >= 10, `only ${cuts} writes: the merge is too small to test`);
    return { power_cuts: cuts };
  },
};
