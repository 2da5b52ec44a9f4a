/**
 * Preloaded by `deno task test`: a failing `console.assert` throws, so that the
 * `console.assert` lines of documentation examples (run by `deno test --doc`) fail their
 * test instead of printing "Assertion failed" and passing.
 *
 * @module
 */
const original = console.assert.bind(console);
console.assert = (condition?: boolean, ...data: unknown[]): void => {
  if (condition) return;
  original(condition, ...data);
  throw new Error(`console.assert failed${data.length > 0 ? ": " + data.join(" ") : ""}`);
};
