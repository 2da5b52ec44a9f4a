/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests. It throws
 * {@linkcode ExpositionError} (with the line number) on anything a scraper could reject or
 * misread:
 *
 * - every family has exactly one `# HELP` and one `# TYPE`, both before its first sample;
 * - metric and label names match the grammar; label names are unique per sample and do not
 *   start with `__`; label values use only the `\\`, `\"`, `\n` escapes;
 * - values are floats, `NaN`, `+Inf` or `-Inf`; timestamps integers;
 * - the samples of a family are one contiguous group; no series appears twice;
 * - a sample belongs to its family: `name` for counters and gauges, `name_bucket`,
 *   `name_sum`, `name_count` for histograms;
 * - counters are not negative; histograms have, per label set, buckets with a valid `le`
 *   in ascending order ending at `+Inf`, cumulative (non-decreasing) counts, and `_sum` and
 *   `_count` with `_count` equal to the `+Inf` bucket;
 * - the text ends with a newline.
 *
 * @module
 */

/** A parse failure, with the 1-based line. */
export class ExpositionError extends Error {
  /** The line where it failed (0: the whole document). */
  readonly line: number;
  /** Creates the error. */
  constructor(line: number, message: string) {
    super(line > 0 ? `line ${line}: ${message}` : message);
    this.name = "ExpositionError";
    this.line = line;
  }
}

/** One sample line. */
export interface Sample {
  /** The sample's own name (`x_bucket` for a histogram bucket). */
  name: string;
  /** Its labels. */
  labels: Record<string, string>;
  /** Its value. */
  value: number;
  /** Its timestamp, if given. */
  timestamp?: number;
  /** Line number. */
  line: number;
}

/** The metric types of format 0.0.4. */
export type FamilyType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

/** A metric family: its help, type and samples. */
export interface Family {
  /** The family name (without `_bucket`/`_sum`/`_count`). */
  name: string;
  /** The HELP text, unescaped. */
  help: string;
  /** The TYPE. */
  type: FamilyType;
  /** Its samples in order. */
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INT_RE = /^-?\d+$/;
const TYPES = new Set<FamilyType>(["counter", "gauge", "histogram", "summary", "untyped"]);

/**
 * Parses an exposition strictly and returns its families by name, in order.
 *
 * @example
 * ```ts ignore
 * const families = parseExposition(await (await fetch(url)).text());
 * ```
 */
export function parseExposition(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith("\n")) {
    throw new ExpositionError(0, "The exposition does not end with a newline");
  }
  const families = new Map<string, Draft>();
  const closed = new Set<string>(); // families whose group of samples has ended
  const seenSeries = new Set<string>();
  let current: Draft | null = null;
  const lines = text.split("\n");
  lines.pop(); // after the final newline
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const line = lines[i];
    if (line.includes("\r")) throw new ExpositionError(n, "Carriage return in a line");
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) continue; // a plain comment
      const [, kind, name, rest = ""] = m;
      if (!NAME_RE.test(name)) throw new ExpositionError(n, `Invalid metric name "${name}"`);
      let f = families.get(name);
      if (f && f.samples.length > 0) {
        throw new ExpositionError(n, `${kind} for "${name}" after its samples`);
      }
      if (!f) {
        if (current && current.name !== name) closed.add(current.name);
        f = { name, help: null, type: null, samples: [] };
        families.set(name, f);
      }
      current = f;
      if (kind === "HELP") {
        if (f.help !== null) throw new ExpositionError(n, `Second HELP for "${name}"`);
        f.help = unescapeHelp(rest, n);
      } else {
        if (f.type !== null) throw new ExpositionError(n, `Second TYPE for "${name}"`);
        const t = rest.trim() as FamilyType;
        if (!TYPES.has(t)) throw new ExpositionError(n, `Unknown type "${rest}"`);
        f.type = t;
      }
      continue;
    }
    const sample = parseSample(line, n);
    const family = familyOf(sample.name, families);
    if (!family) throw new ExpositionError(n, `Sample "${sample.name}" has no family`);
    if (family.help === null) throw new ExpositionError(n, `Family "${family.name}" has no HELP`);
    if (family.type === null) throw new ExpositionError(n, `Family "${family.name}" has no TYPE`);
    if (current !== family) {
      if (closed.has(family.name) || family.samples.length > 0) {
        throw new ExpositionError(n, `Samples of "${family.name}" are not one group`);
      }
      if (current) closed.add(current.name);
      current = family;
    }
    const key = sample.name + "{" +
      Object.keys(sample.labels).sort().map((k) => `${k}=${JSON.stringify(sample.labels[k])}`)
        .join(",") +
      "}";
    if (seenSeries.has(key)) throw new ExpositionError(n, `Series ${key} appears twice`);
    seenSeries.add(key);
    if (family.type === "counter" && !(sample.value >= 0)) {
      throw new ExpositionError(n, `Counter "${sample.name}" is ${sample.value}`);
    }
    family.samples.push(sample);
  }
  const out = new Map<string, Family>();
  for (const f of families.values()) {
    if (f.help === null) throw new ExpositionError(0, `Family "${f.name}" has no HELP`);
    if (f.type === null) throw new ExpositionError(0, `Family "${f.name}" has no TYPE`);
    const family: Family = { name: f.name, help: f.help, type: f.type, samples: f.samples };
    if (family.type === "histogram") checkHistogram(family);
    out.set(f.name, family);
  }
  return out;
}

/** A family while it is being read: HELP and TYPE may still be missing. */
interface Draft {
  name: string;
  help: string | null;
  type: FamilyType | null;
  samples: Sample[];
}

/** The family a sample name belongs to, by the rules of its type. */
function familyOf(name: string, families: Map<string, Draft>): Draft | null {
  const own = families.get(name);
  if (own && own.type !== "histogram" && own.type !== "summary") return own;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const f = families.get(name.slice(0, -suffix.length));
    if (f && f.type === "histogram") return f;
    if (f && f.type === "summary" && suffix !== "_bucket") return f;
  }
  if (own && own.type === "summary") return own; // quantile samples
  return null; // unknown, or a bare sample of a histogram family
}

function parseSample(line: string, n: number): Sample {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i])) i++;
  const name = line.slice(0, i);
  if (!NAME_RE.test(name)) throw new ExpositionError(n, `Invalid metric name in "${line}"`);
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    for (;;) {
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] === "}") {
        i++;
        break;
      }
      const start = i;
      while (i < line.length && /[a-zA-Z0-9_]/.test(line[i])) i++;
      const label = line.slice(start, i);
      if (!LABEL_NAME_RE.test(label)) {
        throw new ExpositionError(n, `Invalid label name in "${line}"`);
      }
      if (label.startsWith("__")) throw new ExpositionError(n, `Reserved label name "${label}"`);
      if (label in labels) throw new ExpositionError(n, `Label "${label}" given twice`);
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] !== "=") throw new ExpositionError(n, `Expected "=" after label "${label}"`);
      i++;
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] !== '"') throw new ExpositionError(n, `Expected a quoted value for "${label}"`);
      i++;
      let value = "";
      for (;;) {
        if (i >= line.length) throw new ExpositionError(n, `Unterminated value of "${label}"`);
        const c = line[i++];
        if (c === '"') break;
        if (c === "\\") {
          const e = line[i++];
          if (e === "\\") value += "\\";
          else if (e === '"') value += '"';
          else if (e === "n") value += "\n";
          else throw new ExpositionError(n, `Invalid escape "\\${e}" in label "${label}"`);
        } else {
          value += c;
        }
      }
      labels[label] = value;
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] === ",") {
        i++;
        continue;
      }
      if (line[i] === "}") {
        i++;
        break;
      }
      throw new ExpositionError(n, `Expected "," or "}" after label "${label}"`);
    }
  }
  if (line[i] !== " " && line[i] !== "\t") {
    throw new ExpositionError(n, `Expected whitespace before the value in "${line}"`);
  }
  const rest = line.slice(i).trim().split(/[ \t]+/);
  if (rest.length < 1 || rest.length > 2 || rest[0] === "") {
    throw new ExpositionError(n, `Expected a value and an optional timestamp in "${line}"`);
  }
  const value = parseValue(rest[0], n);
  const sample: Sample = { name, labels, value, line: n };
  if (rest.length === 2) {
    if (!INT_RE.test(rest[1])) throw new ExpositionError(n, `Invalid timestamp "${rest[1]}"`);
    sample.timestamp = Number(rest[1]);
  }
  return sample;
}

function parseValue(s: string, n: number): number {
  if (s === "NaN") return NaN;
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (!FLOAT_RE.test(s)) throw new ExpositionError(n, `Invalid value "${s}"`);
  return Number(s);
}

function unescapeHelp(s: string, n: number): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = s[++i];
    if (e === "\\") out += "\\";
    else if (e === "n") out += "\n";
    else throw new ExpositionError(n, `Invalid escape "\\${e}" in HELP`);
  }
  return out;
}

function checkHistogram(f: Family): void {
  interface Group {
    buckets: { le: number; value: number; line: number }[];
    sum?: number;
    count?: number;
    line: number;
  }
  const groups = new Map<string, Group>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.keys(rest).sort().map((k) => [k, rest[k]]));
    let g = groups.get(key);
    if (!g) {
      g = { buckets: [], line: s.line };
      groups.set(key, g);
    }
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new ExpositionError(s.line, `Bucket of "${f.name}" without le`);
      g.buckets.push({ le: parseValue(le, s.line), value: s.value, line: s.line });
    } else if (le !== undefined) {
      throw new ExpositionError(s.line, `"${s.name}" has an le label`);
    } else if (s.name === `${f.name}_sum`) {
      g.sum = s.value;
    } else if (s.name === `${f.name}_count`) {
      g.count = s.value;
    }
  }
  for (const [key, g] of groups) {
    if (g.buckets.length === 0) throw new ExpositionError(g.line, `${f.name}${key}: no buckets`);
    for (let i = 1; i < g.buckets.length; i++) {
      const a = g.buckets[i - 1];
      const b = g.buckets[i];
      if (!(b.le > a.le)) {
        throw new ExpositionError(b.line, `${f.name}: le ${b.le} does not ascend after ${a.le}`);
      }
      if (!(b.value >= a.value)) {
        throw new ExpositionError(b.line, `${f.name}: bucket counts are not cumulative`);
      }
    }
    const inf = g.buckets[g.buckets.length - 1];
    if (inf.le !== Infinity) throw new ExpositionError(inf.line, `${f.name}: no +Inf bucket`);
    if (g.count === undefined) throw new ExpositionError(g.line, `${f.name}${key}: no _count`);
    if (g.sum === undefined) throw new ExpositionError(g.line, `${f.name}${key}: no _sum`);
    if (g.count !== inf.value) {
      throw new ExpositionError(
        inf.line,
        `${f.name}: _count ${g.count} != +Inf bucket ${inf.value}`,
      );
    }
  }
}

/**
 * Naming conventions (https://prometheus.io/docs/practices/naming/) for families with
 * `prefix`: counters end in `_total` and nothing else does; base units (`_seconds`,
 * `_bytes`), never milliseconds; histograms end in a unit; snake_case names and labels.
 * Returns the violations (empty when none).
 */
export function conventionViolations(families: Map<string, Family>, prefix: string): string[] {
  const out: string[] = [];
  for (const f of families.values()) {
    if (!f.name.startsWith(prefix)) out.push(`${f.name}: no "${prefix}" prefix`);
    if (!/^[a-z][a-z0-9_]*$/.test(f.name)) out.push(`${f.name}: not snake_case`);
    if (f.type === "counter" && !f.name.endsWith("_total")) {
      out.push(`${f.name}: counter without _total`);
    }
    if (f.type !== "counter" && f.name.endsWith("_total")) {
      out.push(`${f.name}: _total on a ${f.type}`);
    }
    if (/(^|_)(ms|millis|milliseconds|us|micros|kb|mb|minutes|hours)(_|$)/.test(f.name)) {
      out.push(`${f.name}: not a base unit`);
    }
    if (f.type === "histogram" && !/_(seconds|bytes)$/.test(f.name)) {
      out.push(`${f.name}: histogram without a base unit suffix`);
    }
    for (const s of f.samples) {
      for (const l of Object.keys(s.labels)) {
        if (!/^[a-z][a-z0-9_]*$/.test(l)) out.push(`${f.name}: label "${l}" not snake_case`);
      }
    }
  }
  return [...new Set(out)];
}

/**
 * The value of the series `name` whose labels include `labels`; throws unless exactly one
 * matches.
 */
export function valueOf(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const matches: Sample[] = [];
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) matches.push(s);
    }
  }
  if (matches.length !== 1) {
    throw new Error(`${matches.length} series match ${name}${JSON.stringify(labels)}`);
  }
  return matches[0].value;
}
