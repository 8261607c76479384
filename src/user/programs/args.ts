// Option parsing shared by the stress programs (their argv is built by the host from `run`'s options,
// and checked again here, so a program started any other way gets the same one-line errors). Pure
// functions: no state, no shared memory, no lock.

/** The value after an integer option: the number, or the one-line error naming the allowed range. */
export function intArg(flag: string, val: string | undefined, min: number, max: number): number | string {
  const n = Number(val);
  if (val === undefined || !/^\d+$/.test(val) || n < min || n > max)
    return `${flag} ${val ?? ''} must be an integer from ${min} to ${max}`.replace('  ', ' ');
  return n;
}
