/**
 * What the load generator sends ({@linkcode Target}) and the contract of its senders: one
 * per protocol, each calls back once per request with the request's outcome.
 *
 * @module
 */

/** What a request ended with. */
export interface Outcome {
  /** Error kind, or null for a success. */
  error: string | null;
  /** Job time the server reported (`x-slept-us`), in µs, or -1. */
  sleptUs: number;
}

/** Called once with the outcome of a request. */
export type Done = (outcome: Outcome) => void;

/** Sends requests of a run over one protocol. */
export interface Sender {
  /** Sends request `i` (job time `jobMs`, or NaN) and calls `done` once with its outcome. */
  send(jobMs: number, done: Done): void;
  /** Requests waiting for a connection (HTTP at its cap). */
  readonly waiting: number;
  /** Requests that had to wait for a connection because of the cap. */
  readonly stalls: number;
  /** Connections opened so far. */
  readonly opened: number;
  /** Requests sent again after a failure (EP with `Target.retry`). */
  readonly retries: number;
  /** Fails what is outstanding with `kind` and closes every connection. */
  close(kind: string): void;
}

/** The header (HTTP) or metadata key (EP) in which the `sleep` service reports its job time, µs. */
export const SLEPT_KEY = "x-slept-us";

/** What to send: the target of a run. */
export interface Target {
  /** `ep` (EP, pipelined) or `http` (HTTP/1.1 keep-alive, one request per connection). */
  protocol: "ep" | "http";
  /** Server address, `host:port`. */
  addr: string;
  /** Service name (EP), and by default the first path segment (HTTP). */
  service: string;
  /** HTTP path; default `/<service>`. */
  path?: string;
  /** Request body when there is no job-time mix. */
  body?: Uint8Array;
  /** Header fields (HTTP) or metadata (EP). */
  headers?: [string, string][];
  /** EP token. */
  token?: string;
  /** EP: servers to fail over across, in order (`addr` is the first). */
  servers?: string[];
  /** EP: retries of a request that failed overloaded, shutting_down, worker_lost or lost. */
  retry?: number;
}
