// printf formatting (glibc's vfprintf, pure): no memory access except through the string reader
// the caller passes for %s of a C-string address. No state and no lock; callable from any thread.
import { at } from '../../lib/at.ts';

export type PrintfArg = string | number | bigint;

const toBig = (a: PrintfArg | undefined): bigint => {
  if (typeof a === 'bigint') return a;
  if (typeof a === 'number') return BigInt(Math.trunc(Number.isFinite(a) ? a : 0));
  if (typeof a === 'string') {
    try {
      return BigInt(a.trim() || '0');
    } catch {
      return 0n;
    }
  }
  return 0n;
};

/**
 * C printf formatting: flags `-+ 0#`, width and precision (digits or `*`), length modifiers
 * (hh h l ll z j t L q, accepted and used for unsigned wrap-around), conversions d i u x X o c s p %.
 * `%s` takes a JS string, or a number that is the VA of a C string (read with readCString; 0 prints
 * "(null)" as glibc does).
 */
export function formatPrintf(fmt: string, args: PrintfArg[], readCString: (va: number) => string): string {
  let out = '';
  let ai = 0;
  const n = fmt.length;
  let i = 0;
  while (i < n) {
    const pct = fmt.indexOf('%', i);
    if (pct < 0) {
      out += fmt.slice(i);
      break;
    }
    out += fmt.slice(i, pct);
    i = pct + 1;
    if (i >= n) {
      out += '%';
      break;
    }
    let left = false;
    let plus = false;
    let space = false;
    let zero = false;
    let alt = false;
    for (;;) {
      const c = fmt[i];
      if (c === '-') left = true;
      else if (c === '+') plus = true;
      else if (c === ' ') space = true;
      else if (c === '0') zero = true;
      else if (c === '#') alt = true;
      else break;
      i++;
    }
    let width = 0;
    if (fmt[i] === '*') {
      width = Number(toBig(args[ai++]));
      if (width < 0) {
        left = true;
        width = -width;
      }
      i++;
    } else {
      while (i < n && at(fmt, i) >= '0' && at(fmt, i) <= '9') width = width * 10 + (fmt.charCodeAt(i++) - 48);
    }
    let prec = -1;
    if (fmt[i] === '.') {
      i++;
      prec = 0;
      if (fmt[i] === '*') {
        prec = Number(toBig(args[ai++]));
        if (prec < 0) prec = -1;
        i++;
      } else {
        while (i < n && at(fmt, i) >= '0' && at(fmt, i) <= '9') prec = prec * 10 + (fmt.charCodeAt(i++) - 48);
      }
    }
    let bits = 32;
    for (;;) {
      const c = fmt[i];
      if (c === 'h') bits = fmt[i + 1] === 'h' ? 8 : 16;
      else if (c === 'l' || c === 'z' || c === 'j' || c === 't' || c === 'L' || c === 'q') bits = 64;
      else break;
      i++;
      if (c === 'h' && bits === 8) i++;
      if (c === 'l' && fmt[i] === 'l') i++;
    }
    const conv = fmt[i++];
    if (conv === undefined) break;
    let body: string;
    let prefix = '';
    let numeric = true;
    switch (conv) {
      case '%':
        out += '%';
        continue;
      case 'd':
      case 'i': {
        let v = BigInt.asIntN(bits, toBig(args[ai++]));
        if (v < 0n) {
          prefix = '-';
          v = -v;
        } else if (plus) prefix = '+';
        else if (space) prefix = ' ';
        body = v.toString(10);
        break;
      }
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        const v = BigInt.asUintN(bits, toBig(args[ai++]));
        body = v.toString(conv === 'u' ? 10 : conv === 'o' ? 8 : 16);
        if (conv === 'X') body = body.toUpperCase();
        if (alt && v !== 0n) {
          if (conv === 'x') prefix = '0x';
          else if (conv === 'X') prefix = '0X';
          else if (conv === 'o' && !body.startsWith('0')) body = '0' + body;
        }
        break;
      }
      case 'p': {
        const v = toBig(args[ai++]);
        body = v === 0n ? '(nil)' : '0x' + BigInt.asUintN(64, v).toString(16);
        numeric = false;
        break;
      }
      case 'c': {
        const a = args[ai++];
        body = typeof a === 'string' ? a.slice(0, 1) : String.fromCharCode(Number(BigInt.asUintN(8, toBig(a))));
        numeric = false;
        break;
      }
      case 's': {
        const a = args[ai++];
        if (typeof a === 'string') body = a;
        else if (a === undefined) body = '';
        else {
          const va = typeof a === 'bigint' ? Number(a) : a;
          body = va === 0 ? '(null)' : readCString(va);
        }
        if (prec >= 0) body = body.slice(0, prec);
        numeric = false;
        break;
      }
      default:
        // unknown conversion: print it literally, as glibc prints unknown specs
        out += '%' + conv;
        continue;
    }
    if (numeric && prec >= 0) {
      if (prec === 0 && body === '0') body = '';
      if (body.length < prec) body = '0'.repeat(prec - body.length) + body;
    }
    const len = prefix.length + body.length;
    if (len >= width) out += prefix + body;
    else if (left) out += prefix + body + ' '.repeat(width - len);
    else if (zero && numeric && prec < 0) out += prefix + '0'.repeat(width - len) + body;
    else out += ' '.repeat(width - len) + prefix + body;
  }
  return out;
}
