// A byte pattern that differs per seed and per byte (xorshift32), for tests that move data around.
export function pattern(seed: number, n = 4096): Uint8Array {
  const p = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    p[i] = x & 0xff;
  }
  return p;
}
