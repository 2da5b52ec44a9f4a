/** Turns a path (relative to the working directory) or a URL into a URL string. */
export function toFileUrl(pathOrUrl: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(pathOrUrl)) return pathOrUrl;
  const abs = pathOrUrl.startsWith("/") ? pathOrUrl : `${Deno.cwd()}/${pathOrUrl}`;
  return new URL(`file://${abs.split("/").map(encodeURIComponent).join("/")}`).href;
}
