/**
 * A plain job handler for the protocol-level tests (no balancer): `echo` (the body, or the
 * query for GET), `hello`, and `/_ep/health`.
 *
 * @module
 */
import { ErrorCode } from "../protocol/errors.ts";
import { type Job, JobError, type JobHandler, type JobResult } from "../core/job.ts";

const TEXT: [string, string][] = [["content-type", "text/plain; charset=utf-8"]];
const JSON_TYPE: [string, string][] = [["content-type", "application/json"]];
const HELLO = new TextEncoder().encode("hello\n");

/** A handler serving the test services. */
export function demoHandler(): JobHandler {
  const started = Date.now();
  return (job: Job): JobResult => {
    if (job.protocol === "http" && job.path.startsWith("/_ep/")) {
      if (job.path === "/_ep/health") {
        return {
          status: 200,
          headers: JSON_TYPE,
          body: JSON.stringify({ status: "ok", uptimeMs: Date.now() - started }),
        };
      }
      throw new JobError(ErrorCode.NO_SERVICE, `No ep endpoint "${job.path}"`);
    }
    switch (job.service) {
      case "echo":
        if (job.method === "GET" || job.method === "HEAD") {
          return { status: 200, headers: TEXT, body: decodeURIComponentSafe(job.query) };
        }
        return {
          status: 200,
          headers: job.protocol === "http" ? echoType(job) : [],
          body: job.body,
        };
      case "hello":
        return { status: 200, headers: TEXT, body: HELLO };
      case "":
        throw new JobError(ErrorCode.NO_SERVICE, "No service named in the path");
      default:
        throw new JobError(ErrorCode.NO_SERVICE, `No service "${job.service}"`);
    }
  };
}

function echoType(job: Job): [string, string][] {
  for (const [k, v] of job.headers) if (k === "content-type") return [["content-type", v]];
  return [["content-type", "application/octet-stream"]];
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}
