// at(a, i): an element that must exist. Where an index is in range by construction (a loop bound,
// a binary search, a hashed slot), reading it through at() states that, and a broken construction
// fails loudly with a RangeError instead of letting `undefined` flow on (noUncheckedIndexedAccess
// makes every other indexed read say what it does when the element is missing). A pure function: no
// state, no lock; on a shared view it is a plain read, so the caller must hold the word's guard (or be
// its only writer).

export function at<T>(a: ArrayLike<T>, i: number): T {
  const v = a[i];
  if (v === undefined) throw new RangeError(`index ${i} is outside an array of ${a.length}`);
  return v;
}
