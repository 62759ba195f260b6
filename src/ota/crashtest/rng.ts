/**
 * A small seeded generator (mulberry32): every kill point and delay of a crash-test round comes
 * from it, so a failing round replays exactly from its seed.
 */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** The seed of round `round` of a run seeded `seed`: rounds are independent and replayable alone. */
  static roundSeed(seed: number, scenario: string, round: number): number {
    let h = (seed ^ 0x9e3779b9) >>> 0;
    for (const ch of `${scenario}#${round}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    return h;
  }
}
