// PIGG's k-fold split, bit-exact with CPython: `random.seed(seed); random.shuffle(items)` then
// folds of size n // k with the last fold taking the remainder (PIGG src/utils/kfold.py create_k_folds).
// Reproducing the shuffle needs CPython's MT19937 seeding (init_by_array) and its rejection-sampling
// _randbelow, both implemented below.

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** CPython's `random.Random` core (Modules/_randommodule.c + Lib/random.py), seeded from an integer. */
export class PythonRandom {
  private readonly mt = new Uint32Array(N);
  private mti = N + 1;

  constructor(seed: number | bigint) {
    this.seed(seed);
  }

  /** `random.seed(int)`: init_by_array over |seed| split into 32-bit words, least significant first. */
  seed(seed: number | bigint): void {
    if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
      throw new Error(`seed must be a safe integer or a bigint, got ${seed}`);
    }
    let rest = BigInt(seed);
    if (rest < 0n) rest = -rest;
    const key: number[] = [];
    while (rest > 0n) {
      key.push(Number(rest & 0xffffffffn));
      rest >>= 32n;
    }
    if (key.length === 0) key.push(0);
    this.initByArray(key);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.mti = N;
  }

  private initByArray(key: number[]): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul(prev ^ (prev >>> 30), 1664525)) + key[j]! + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul(prev ^ (prev >>> 30), 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
    }
    mt[0] = 0x80000000; // MSB is 1, assuring a non-zero initial array
  }

  /** One 32-bit output of MT19937 (genrand_uint32). */
  uint32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
        mt[kk] = mt[kk + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
        mt[kk] = mt[kk + (M - N)]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      const y = (mt[N - 1]! & UPPER_MASK) | (mt[0]! & LOWER_MASK);
      mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      this.mti = 0;
    }
    let y = mt[this.mti++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `random.getrandbits(k)`: words are filled least significant first, the last one truncated from the top. */
  getrandbits(k: number): bigint {
    if (!Number.isInteger(k) || k < 0) throw new Error(`getrandbits expects a non-negative integer, got ${k}`);
    if (k <= 32) return BigInt(this.bits32(k));
    let result = 0n;
    for (let shift = 0n, left = k; left > 0; left -= 32, shift += 32n) {
      const word = left >= 32 ? this.uint32() : this.uint32() >>> (32 - left);
      result |= BigInt(word) << shift;
    }
    return result;
  }

  private bits32(k: number): number {
    return k === 0 ? 0 : this.uint32() >>> (32 - k);
  }

  /** `random._randbelow(n)` (the getrandbits variant): rejection sampling with k = n.bit_length(). */
  randbelow(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`randbelow expects a positive safe integer, got ${n}`);
    const k = n < 2 ** 32 ? 32 - Math.clz32(n) : n.toString(2).length;
    if (k <= 32) {
      let r = this.bits32(k);
      while (r >= n) r = this.bits32(k);
      return r;
    }
    const bn = BigInt(n);
    let r = this.getrandbits(k);
    while (r >= bn) r = this.getrandbits(k);
    return Number(r);
  }

  /** `random.random()`: a 53-bit double in [0, 1). */
  random(): number {
    const a = this.uint32() >>> 5;
    const b = this.uint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** `random.shuffle(x)` in place: Fisher-Yates from the end with j = _randbelow(i + 1). */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.randbelow(i + 1);
      const tmp = items[i]!;
      items[i] = items[j]!;
      items[j] = tmp;
    }
    return items;
  }
}

export function pythonRandom(seed: number | bigint): PythonRandom {
  return new PythonRandom(seed);
}

/** PIGG's create_k_folds over any list: seeded shuffle of a copy, folds of n // k, the last takes the rest. */
export function createKFolds<T>(items: readonly T[], k: number, seed: number | bigint = 42): T[][] {
  if (!Number.isInteger(k) || k < 1) throw new Error(`k must be an integer >= 1, got ${k}`);
  const shuffled = pythonRandom(seed).shuffle([...items]);
  const size = Math.floor(shuffled.length / k);
  const folds: T[][] = [];
  for (let i = 0; i < k; i++) {
    folds.push(i === k - 1 ? shuffled.slice(i * size) : shuffled.slice(i * size, (i + 1) * size));
  }
  return folds;
}

/** The folds of the indices 0..n-1; PIGG shuffles its sample list, which is the same permutation. */
export function kFolds(n: number, k: number, seed: number | bigint = 42): number[][] {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`n must be an integer >= 0, got ${n}`);
  return createKFolds(
    Array.from({ length: n }, (_, i) => i),
    k,
    seed,
  );
}

/** Training data for one CV round (PIGG's get_training_folds): every other fold, concatenated in fold order. */
export function trainingFolds<T>(folds: readonly T[][], testFold: number): T[] {
  if (!Number.isInteger(testFold) || testFold < 0 || testFold >= folds.length) {
    throw new Error(`test fold must be in [0, ${folds.length}), got ${testFold}`);
  }
  return folds.flatMap((fold, i) => (i === testFold ? [] : fold));
}
