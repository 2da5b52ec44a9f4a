/**
 * The JS side of `require` in a `LuaEngine` (`engine.ts`): the script directory and the
 * reading of a module file under it. The searcher itself is Lua (`ep.lua`, the `require`
 * section): it turns `a.b` into `a/b.lua`, then `a/b/init.lua`, and reads each through the
 * host function `read_module` (`_host.ts`), which calls {@linkcode readModule}.
 *
 * Files are read through Deno, not wasmoon's `io` (which sees an in-memory file system),
 * so `require` also works for files embedded in a `deno compile` binary. Paths cannot
 * leave the script directory.
 *
 * @module
 */

import { fileURLToPath, pathToFileURL } from "node:url";

/** A script directory given as a path or URL, as a `file:` URL ending in `/`. */
export function toDirUrl(dir: string | URL): URL {
  let url: URL;
  if (dir instanceof URL) url = new URL(dir.href);
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dir)) url = new URL(dir);
  else url = pathToFileURL(dir);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

/** The script directory as a path without a trailing separator (`ep.lua`'s `package.path`). */
export function scriptDirPath(dir: URL): string {
  return fileURLToPath(dir).replace(/[\\/]$/, "");
}

/**
 * Source of module file `rel` under the script directory `dir`, or null when absent (or
 * when there is no script directory). Throws a `TypeError` for a path that is absolute,
 * has empty, `.` or `..` segments, or would leave `dir`.
 */
export function readModule(dir: URL | undefined, rel: string): string | null {
  if (dir === undefined) return null;
  if (
    rel.length === 0 || rel.startsWith("/") || rel.includes("\\") || rel.includes("\0") ||
    rel.split("/").some((s) => s === "" || s === "." || s === "..")
  ) {
    throw new TypeError(`Invalid module path: "${rel}"`);
  }
  const url = new URL(rel, dir);
  if (!url.href.startsWith(dir.href)) throw new TypeError(`Invalid module path: "${rel}"`);
  try {
    return Deno.readTextFileSync(url);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.IsADirectory) {
      return null;
    }
    throw err;
  }
}
