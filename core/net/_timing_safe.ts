const enc = new TextEncoder();

/**
 * Compares two strings in time that depends only on their lengths, not on where they
 * differ (for tokens).
 */
export function timingSafeEqualString(a: string, b: string): boolean {
  const x = enc.encode(a);
  const y = enc.encode(b);
  const n = Math.max(x.length, y.length);
  let diff = x.length ^ y.length;
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
