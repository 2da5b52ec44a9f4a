/**
 * What a peer-supplied string must never carry onto a terminal or into a log line, for the
 * tests of `core/escape.ts` and of the places that show such strings.
 *
 * @module
 */

/**
 * The code units of `s` (hex) that are C0 or C1 controls, DEL, U+2028/U+2029, bidi
 * formatting characters or lone surrogates.
 */
export function unsafeChars(s: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const hi = c >= 0xd800 && c <= 0xdbff;
    const lo = c >= 0xdc00 && c <= 0xdfff;
    if (hi && i + 1 < s.length) {
      const n = s.charCodeAt(i + 1);
      if (n >= 0xdc00 && n <= 0xdfff) {
        i++;
        continue;
      }
    }
    if (
      c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x061c || c === 0x200e || c === 0x200f ||
      (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || hi || lo
    ) out.push(c.toString(16));
  }
  return out;
}
