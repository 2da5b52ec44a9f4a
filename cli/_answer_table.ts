/**
 * Reading a balancer's JSON answer (stats, admin results) and showing it as a terminal
 * table, for `ep status` and the admin verbs: every string in an answer may come from a
 * peer, so strings are shown through `escapeControls`.
 *
 * @module
 */
import { escapeControls } from "../core/escape.ts";

/** A JSON object of an answer. */
export type Json = Record<string, unknown>;

/**
 * A table of `rows` under `headers`, columns two spaces apart: numbers right-aligned, the
 * columns named in `left` left-aligned (the last one not padded); `empty` when no row.
 *
 * @example
 * ```ts
 * import { table } from "./_answer_table.ts";
 * console.assert(table(["NAME", "N"], [["a", "10"]], "none", new Set(["NAME"])) === "NAME   N\na     10");
 * ```
 */
export function table(
  headers: string[],
  rows: string[][],
  empty: string,
  left: ReadonlySet<string>,
): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => {
      const l = left.has(headers[i]);
      if (i === cells.length - 1 && l) return c;
      return l ? c.padEnd(widths[i]) : c.padStart(widths[i]);
    }).join("  ");
  const lines = [line(headers)];
  if (rows.length === 0) lines.push(empty);
  for (const r of rows) lines.push(line(r));
  return lines.join("\n");
}

/** `v` as an object, or null. */
export function obj(v: unknown): Json | null {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? v as Json : null;
}

/** `v` as an array (empty when it is not one). */
export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The objects of the array `v`. */
export function records(v: unknown): Json[] {
  return arr(v).map(obj).filter((x): x is Json => x !== null);
}

/** A string of the answer, as shown: every string in it may come from a peer. */
export function str(v: unknown): string | null {
  return typeof v === "string" ? escapeControls(v) : null;
}

/** A number of the answer, or NaN. */
export function num(v: unknown): number {
  return typeof v === "number" ? v : NaN;
}

/** A whole number with thousands separators, or "-" for NaN. */
export function int(n: number): string {
  return n === n ? Math.round(n).toLocaleString("en-US") : "-";
}
