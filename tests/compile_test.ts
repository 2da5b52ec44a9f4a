import assert from "node:assert/strict";

/** Turns deno compile's "Embedded Files" tree into paths relative to the repo root. */
function embeddedPaths(output: string): Set<string> {
  // deno-lint-ignore no-control-regex
  const lines = output.replace(/\x1b\[[0-9;]*m/g, "").split("\n");
  const start = lines.findIndex((l) => l.trim() === "Embedded Files");
  assert.ok(start >= 0, `no "Embedded Files" section in:\n${output}`);
  const paths = new Set<string>();
  const stack: string[] = [];
  for (const line of lines.slice(start + 1)) {
    // Each level is two characters ("│ " or "  "), then "├── "/"└── " (a file) or
    // "├─┬ "/"└─┬ " (a directory), the name, and an optional size in parentheses.
    const m = /^((?:│ | {2})*)[├└]─[─┬] (.+?)(?: \([^)]*\))?$/.exec(line);
    if (!m) continue;
    stack.length = m[1].length / 2;
    stack.push(m[2]);
    paths.add(stack.join("/"));
  }
  return paths;
}

/** Whether `haystack` contains `needle` (a slice of an embedded file's bytes). */
function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  const first = needle[0];
  for (let i = haystack.indexOf(first); i >= 0; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return true;
  }
  return false;
}

/** Every file the binary needs at run time: worker entry modules, the wasm, Lua scripts. */
async function runtimeFiles(): Promise<string[]> {
  const files: string[] = ["node_modules/wasmoon/dist/glue.wasm"];
  const walk = async (dir: string, pick: (name: string) => boolean) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p, pick);
      else if (pick(e.name)) files.push(p);
    }
  };
  // Modules loaded by URL at run time (a Web Worker's entry, a dynamic import): nothing
  // imports them statically, so `deno compile` embeds them only when told to.
  files.push(
    "core/threads/thread_main.ts",
    "core/threads/ts_runtime.ts",
    "lua/thread.ts",
    "lua/control.ts",
    "cli/demo_services.ts",
  );
  await walk("lua", (n) => n.endsWith(".lua"));
  await walk("scripts", (n) => n.endsWith(".lua"));
  return files;
}

Deno.test({
  name: "deno task compile embeds every worker module, glue.wasm and the Lua scripts",
  // deno compile fetches a denort binary it cannot reach here; DENORT_BIN stands in for it.
  async fn() {
    const denort = Deno.env.get("DENORT_BIN") ?? "/bin/true";
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile"],
      env: { DENORT_BIN: denort, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.ok(out.success, text);
    const embedded = [...embeddedPaths(text)];
    const listing = embedded.join("\n");
    const binary = await Deno.readFile("dist/ep");
    const needed = await runtimeFiles();
    for (const file of needed) {
      if (file.endsWith(".ts")) {
        // Modules: listed by path, or under a directory deno prints collapsed ("core/*"),
        // and their specifier is in the binary's module table.
        const dir = file.slice(0, file.lastIndexOf("/"));
        assert.ok(
          embedded.includes(file) || embedded.includes(`${dir}/*`),
          `${file} is not embedded; embedded:\n${listing}`,
        );
        const name = new TextEncoder().encode(file.slice(file.lastIndexOf("/") + 1));
        assert.ok(contains(binary, name), `${file} is not in the binary`);
      } else {
        // Data files (the wasm, Lua scripts) are stored as they are: find their bytes.
        const bytes = await Deno.readFile(file);
        const slice = bytes.subarray(bytes.length >> 1, (bytes.length >> 1) + 256);
        assert.ok(slice.length === 0 || contains(binary, slice), `${file} is not embedded`);
        if (!file.startsWith("node_modules/")) {
          const dir = file.slice(0, file.indexOf("/"));
          assert.ok(
            embedded.some((p) => p === file || p === `${dir}/*`),
            `${file} is not listed; embedded:\n${listing}`,
          );
        }
      }
    }
    assert.ok(embedded.includes("mod.ts"), "the entry module");
    const tests = embedded.filter((p) => p.endsWith("_test.ts") || p.startsWith("tests/"));
    assert.deepEqual(tests, [], "no test files");
  },
});
