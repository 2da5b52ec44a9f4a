/**
 * EP frame types, wire constants and limits. The byte layout of every frame is specified
 * in `protocol/SPEC.md`; {@linkcode EpDecoder} and {@linkcode EpEncoder} turn bytes into
 * {@linkcode Frame} values and back.
 *
 * @module
 */
import { META_KEY_BYTE, SERVICE_BYTE } from "./_bytes.ts";

/**
 * Frame type bytes (header byte 4).
 *
 * @example
 * ```ts
 * import { FrameType } from "./ep_frames.ts";
 * console.assert(FrameType.REQUEST === 0x10);
 * ```
 */
export const FrameType = {
  /** Client or worker → server: first frame of a connection. */
  HELLO: 0x01,
  /** Server → peer: answer to HELLO. */
  WELCOME: 0x02,
  /** Worker → balancer: slots and services, replacing any earlier registration. */
  REGISTER: 0x03,
  /** Worker → balancer: free slots, when no reply carries them. */
  READY: 0x04,
  /** Both ways: liveness and status. */
  HEARTBEAT: 0x05,
  /** Worker or server: stop sending new work. */
  DRAIN: 0x06,
  /** Either way: ask for a STATS frame. */
  STATS_REQUEST: 0x07,
  /** Answer to STATS_REQUEST: a UTF-8 JSON object. */
  STATS: 0x08,
  /** Client → server: a runtime admin operation, a UTF-8 JSON object (SPEC.md §6.12). */
  ADMIN: 0x09,
  /** Answer to ADMIN: a UTF-8 JSON object. */
  ADMIN_RESULT: 0x0a,
  /** A job. */
  REQUEST: 0x10,
  /** The successful answer to a job. */
  REPLY: 0x11,
  /** A failed job (id ≠ 0) or a connection-level error (id = 0). */
  ERROR: 0x12,
  /** Best-effort cancellation of a job. */
  CANCEL: 0x13,
} as const;

/**
 * One of the values of {@linkcode FrameType}.
 *
 * @example
 * ```ts
 * import { FrameType, type FrameTypeValue } from "./ep_frames.ts";
 * const t: FrameTypeValue = FrameType.CANCEL;
 * console.assert(t === 0x13);
 * ```
 */
export type FrameTypeValue = typeof FrameType[keyof typeof FrameType];

/**
 * Peer roles announced in HELLO.
 *
 * @example
 * ```ts
 * import { Role } from "./ep_frames.ts";
 * console.assert(Role.WORKER === 2);
 * ```
 */
export const Role = {
  /** Sends requests, receives replies. */
  CLIENT: 1,
  /** Registers services and serves jobs (and may also send requests). */
  WORKER: 2,
} as const;

/**
 * One of the values of {@linkcode Role}.
 *
 * @example
 * ```ts
 * import { Role, type RoleValue } from "./ep_frames.ts";
 * const r: RoleValue = Role.CLIENT;
 * console.assert(r === 1);
 * ```
 */
export type RoleValue = typeof Role[keyof typeof Role];

/**
 * EP's base version, the one clients speak: every connection can use it.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION } from "./ep_frames.ts";
 * console.assert(PROTOCOL_VERSION === 1);
 * ```
 */
export const PROTOCOL_VERSION = 1;

/**
 * The highest protocol version this codec implements. Version 2 adds status and
 * declarations between workers and balancers (SPEC.md §9.2): the oldest queued job's wait
 * in REQUEST and HEARTBEAT, and the services a worker lets balancers hedge in REGISTER.
 * Balancers and workers offer 1..2; a peer that speaks only 1 still works.
 *
 * @example
 * ```ts
 * import { MAX_PROTOCOL_VERSION } from "./ep_frames.ts";
 * console.assert(MAX_PROTOCOL_VERSION === 2);
 * ```
 */
export const MAX_PROTOCOL_VERSION = 2;

/**
 * The WELCOME `prefetch` a balancer offers workers when not configured, and the most a
 * worker uses unless told otherwise (SPEC.md §9.5).
 *
 * @example
 * ```ts
 * import { DEFAULT_PREFETCH } from "./ep_frames.ts";
 * console.assert(DEFAULT_PREFETCH === 4);
 * ```
 */
export const DEFAULT_PREFETCH = 4;

/**
 * The v1 connection preface a client sends before its first frame: `0xEB 'E' 'P' 0x01`.
 * The last byte is the highest version the client speaks; see {@linkcode encodePreface}.
 *
 * @example
 * ```ts
 * import { PREFACE } from "./ep_frames.ts";
 * console.assert(PREFACE.length === 4 && PREFACE[1] === 0x45);
 * ```
 */
export const PREFACE: readonly [0xeb, 0x45, 0x50, 0x01] = Object.freeze(
  [0xeb, 0x45, 0x50, 0x01] as const,
);

/**
 * Length of the connection preface in bytes.
 *
 * @example
 * ```ts
 * import { PREFACE_SIZE } from "./ep_frames.ts";
 * console.assert(PREFACE_SIZE === 4);
 * ```
 */
export const PREFACE_SIZE = 4;

/**
 * Length of the frame header in bytes: u32 length, u8 type, u8 flags, u16 reserved, u32 id.
 *
 * @example
 * ```ts
 * import { HEADER_SIZE } from "./ep_frames.ts";
 * console.assert(HEADER_SIZE === 12);
 * ```
 */
export const HEADER_SIZE = 12;

/**
 * Default largest payload (bytes after the header) a receiver accepts: 16 MiB.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_PAYLOAD } from "./ep_frames.ts";
 * console.assert(DEFAULT_MAX_PAYLOAD === 16 * 1024 * 1024);
 * ```
 */
export const DEFAULT_MAX_PAYLOAD: number = 16 * 1024 * 1024;

/**
 * Smallest `max_payload` a server may advertise in WELCOME: 64 KiB. Before WELCOME a client
 * keeps every payload within this size.
 *
 * @example
 * ```ts
 * import { MIN_MAX_PAYLOAD } from "./ep_frames.ts";
 * console.assert(MIN_MAX_PAYLOAD === 65536);
 * ```
 */
export const MIN_MAX_PAYLOAD = 65536;

/**
 * Largest peer name (HELLO `name`, WELCOME `server_name`) in UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { MAX_NAME_BYTES } from "./ep_frames.ts";
 * console.assert(MAX_NAME_BYTES === 255);
 * ```
 */
export const MAX_NAME_BYTES = 255;

/**
 * Largest HELLO token in UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { MAX_TOKEN_BYTES } from "./ep_frames.ts";
 * console.assert(MAX_TOKEN_BYTES === 1024);
 * ```
 */
export const MAX_TOKEN_BYTES = 1024;

/**
 * Largest number of meta entries in one REQUEST or REPLY.
 *
 * @example
 * ```ts
 * import { MAX_META_ENTRIES } from "./ep_frames.ts";
 * console.assert(MAX_META_ENTRIES === 256);
 * ```
 */
export const MAX_META_ENTRIES = 256;

/**
 * Largest number of services in one REGISTER.
 *
 * @example
 * ```ts
 * import { MAX_SERVICES } from "./ep_frames.ts";
 * console.assert(MAX_SERVICES === 256);
 * ```
 */
export const MAX_SERVICES = 256;

/**
 * Longest service name in bytes.
 *
 * @example
 * ```ts
 * import { MAX_SERVICE_NAME_BYTES } from "./ep_frames.ts";
 * console.assert(MAX_SERVICE_NAME_BYTES === 64);
 * ```
 */
export const MAX_SERVICE_NAME_BYTES = 64;

/**
 * Longest ERROR message in UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { MAX_MESSAGE_BYTES } from "./ep_frames.ts";
 * console.assert(MAX_MESSAGE_BYTES === 1024);
 * ```
 */
export const MAX_MESSAGE_BYTES = 1024;

/**
 * The u32 "not applicable" value of status fields (`free_slots`, `queue_depth`).
 *
 * @example
 * ```ts
 * import { NOT_APPLICABLE } from "./ep_frames.ts";
 * console.assert(NOT_APPLICABLE === 0xffffffff);
 * ```
 */
export const NOT_APPLICABLE = 0xffff_ffff;

/**
 * Metadata: ordered `[key, value]` pairs. Keys are lower-case HTTP tokens (1–255 bytes),
 * values any UTF-8 up to 65535 bytes; keys may repeat.
 *
 * @example
 * ```ts
 * import type { Meta } from "./ep_frames.ts";
 * const meta: Meta = [["ep-method", "POST"], ["content-type", "application/json"]];
 * console.assert(meta.length === 2);
 * ```
 */
export type Meta = [string, string][];

/**
 * HELLO (0x01), client or worker → server. Header id is 0.
 *
 * @example
 * ```ts
 * import { type HelloFrame, Role } from "./ep_frames.ts";
 * const f: HelloFrame = {
 *   type: "hello", role: Role.CLIENT, minVersion: 1, maxVersion: 1,
 *   heartbeatMs: 5000, name: "cli", token: "",
 * };
 * console.assert(f.role === 1);
 * ```
 */
export interface HelloFrame {
  /** Discriminant. */
  type: "hello";
  /** 1 = client, 2 = worker. */
  role: RoleValue;
  /** Lowest protocol version the sender speaks (≥ 1). */
  minVersion: number;
  /** Highest protocol version the sender speaks (≥ minVersion). */
  maxVersion: number;
  /** Interval the sender will beat at and wants, in ms; 0 = no heartbeats. */
  heartbeatMs: number;
  /** Peer name for logs, ≤ 255 UTF-8 bytes. */
  name: string;
  /** Authentication token, ≤ 1024 UTF-8 bytes; may be empty. */
  token: string;
}

/**
 * WELCOME (0x02), server → peer: the answer to HELLO. Header id is 0.
 *
 * @example
 * ```ts
 * import type { WelcomeFrame } from "./ep_frames.ts";
 * const f: WelcomeFrame = {
 *   type: "welcome", version: 1, maxPayload: 16777216, heartbeatMs: 5000,
 *   prefetch: 1, serverName: "bal-1",
 * };
 * console.assert(f.version === 1);
 * ```
 */
export interface WelcomeFrame {
  /** Discriminant. */
  type: "welcome";
  /** The version chosen for the connection. */
  version: number;
  /** Largest payload the server accepts, in bytes (≥ {@linkcode MIN_MAX_PAYLOAD}). */
  maxPayload: number;
  /** Agreed heartbeat interval in ms; 0 = none. */
  heartbeatMs: number;
  /** For workers: jobs beyond free slots the balancer may hand over (held ≤ slots + prefetch). */
  prefetch: number;
  /** Server name for logs, ≤ 255 UTF-8 bytes. */
  serverName: string;
}

/**
 * REGISTER (0x03), worker → balancer: replaces the worker's registration. Header id is 0.
 *
 * @example
 * ```ts
 * import type { RegisterFrame } from "./ep_frames.ts";
 * const f: RegisterFrame = { type: "register", slots: 8, services: ["user", "money"] };
 * console.assert(f.services.length === 2);
 * ```
 */
export interface RegisterFrame {
  /** Discriminant. */
  type: "register";
  /** Total concurrent job capacity, shared by the services. */
  slots: number;
  /** Service names (see {@linkcode isServiceName}), no duplicates, ≤ 256. */
  services: string[];
  /**
   * Version 2, optional: for each service, in order, when a balancer may send a copy of a
   * job that runs long to another worker (hedging, SPEC.md §9.10): 0 = never (the service is
   * not idempotent), {@linkcode NOT_APPLICABLE} = after the service's recent p95 service
   * time, else after that many ms. Absent: 0 for every service. Not encoded in version 1.
   */
  hedgeMs?: number[];
}

/**
 * READY (0x04), worker → balancer: grants `credit` more jobs (incremental; each REQUEST the
 * balancer sends uses one). Header id is 0. See SPEC.md §9.5.
 *
 * @example
 * ```ts
 * import type { ReadyFrame } from "./ep_frames.ts";
 * const f: ReadyFrame = { type: "ready", credit: 4 };
 * console.assert(f.credit === 4);
 * ```
 */
export interface ReadyFrame {
  /** Discriminant. */
  type: "ready";
  /** How many more jobs the balancer may send. */
  credit: number;
}

/**
 * HEARTBEAT (0x05), both ways. The header id carries the sequence number.
 *
 * @example
 * ```ts
 * import { type HeartbeatFrame, NOT_APPLICABLE } from "./ep_frames.ts";
 * const f: HeartbeatFrame = { type: "heartbeat", seq: 7, freeSlots: 2, queueDepth: NOT_APPLICABLE };
 * console.assert(f.seq === 7);
 * ```
 */
export interface HeartbeatFrame {
  /** Discriminant. */
  type: "heartbeat";
  /** Sequence number (header id), +1 per heartbeat, wrapping at 2^32. */
  seq: number;
  /** Sender's free slots, or {@linkcode NOT_APPLICABLE}. */
  freeSlots: number;
  /** Jobs queued for the receiver's services, or {@linkcode NOT_APPLICABLE}. */
  queueDepth: number;
  /**
   * Version 2 (always decoded there; not encoded in version 1): balancer → worker, how long
   * the oldest job queued for the worker's services has waited, in ms (0 when none);
   * otherwise {@linkcode NOT_APPLICABLE}. Absent when encoding means NA.
   */
  oldestWaitMs?: number;
}

/**
 * DRAIN (0x06), worker or server: send me no new work. Header id is 0.
 *
 * @example
 * ```ts
 * import type { DrainFrame } from "./ep_frames.ts";
 * const f: DrainFrame = { type: "drain", graceMs: 30000 };
 * console.assert(f.graceMs === 30000);
 * ```
 */
export interface DrainFrame {
  /** Discriminant. */
  type: "drain";
  /** How long the sender waits for outstanding work before closing, in ms. */
  graceMs: number;
}

/**
 * STATS_REQUEST (0x07), either way: empty payload, answered by STATS with the same id.
 *
 * @example
 * ```ts
 * import type { StatsRequestFrame } from "./ep_frames.ts";
 * const f: StatsRequestFrame = { type: "statsRequest", id: 1 };
 * console.assert(f.id === 1);
 * ```
 */
export interface StatsRequestFrame {
  /** Discriminant. */
  type: "statsRequest";
  /** Request id, echoed by the STATS answer. */
  id: number;
}

/**
 * STATS (0x08): the answer to STATS_REQUEST, a UTF-8 JSON object.
 *
 * @example
 * ```ts
 * import type { StatsFrame } from "./ep_frames.ts";
 * const f: StatsFrame = { type: "stats", id: 1, json: '{"queued":0}' };
 * console.assert(JSON.parse(f.json).queued === 0);
 * ```
 */
export interface StatsFrame {
  /** Discriminant. */
  type: "stats";
  /** The id of the STATS_REQUEST answered. */
  id: number;
  /** The JSON text (the codec checks UTF-8 only; the receiver parses it). */
  json: string;
}

/**
 * ADMIN (0x09), client → server: a runtime admin operation as a UTF-8 JSON object
 * (`{"op":"drain","worker":"w1"}`, SPEC.md §6.12), answered by ADMIN_RESULT with the same id
 * or by ERROR with that id.
 *
 * @example
 * ```ts
 * import type { AdminFrame } from "./ep_frames.ts";
 * const f: AdminFrame = { type: "admin", id: 3, json: '{"op":"workers"}' };
 * console.assert(JSON.parse(f.json).op === "workers");
 * ```
 */
export interface AdminFrame {
  /** Discriminant. */
  type: "admin";
  /** Request id, echoed by the answer. */
  id: number;
  /** The JSON text (the codec checks UTF-8 only; the receiver parses it). */
  json: string;
}

/**
 * ADMIN_RESULT (0x0A), server → client: the answer to ADMIN, a UTF-8 JSON object.
 *
 * @example
 * ```ts
 * import type { AdminResultFrame } from "./ep_frames.ts";
 * const f: AdminResultFrame = { type: "adminResult", id: 3, json: '{"workers":[]}' };
 * console.assert(JSON.parse(f.json).workers.length === 0);
 * ```
 */
export interface AdminResultFrame {
  /** Discriminant. */
  type: "adminResult";
  /** The id of the ADMIN answered. */
  id: number;
  /** The JSON text (the codec checks UTF-8 only). */
  json: string;
}

/**
 * REQUEST (0x10): a job for a service.
 *
 * @example
 * ```ts
 * import type { RequestFrame } from "./ep_frames.ts";
 * const f: RequestFrame = {
 *   type: "request", id: 1, deadlineMs: 0, priority: 0, attempt: 0, queueDepth: 0,
 *   service: "user", meta: [], body: new TextEncoder().encode("hi"),
 * };
 * console.assert(f.body.length === 2);
 * ```
 */
export interface RequestFrame {
  /** Discriminant. */
  type: "request";
  /** Job id (≠ 0), unique among the sender's outstanding requests on the connection. */
  id: number;
  /** Time left in ms; 0 = the server's default. */
  deadlineMs: number;
  /** 0–255, higher served first. */
  priority: number;
  /** 0 = first delivery; raised on each redelivery. */
  attempt: number;
  /** Set by the balancer on dispatch: jobs still queued for this service; clients send 0. */
  queueDepth: number;
  /**
   * Version 2 (always decoded there; not encoded in version 1): set by the balancer on
   * dispatch, how long the oldest job still queued for the worker's services has waited, in
   * ms, at most 65535 (0xFFFF); 0 when none. Clients send 0; absent when encoding means 0.
   */
  oldestWaitMs?: number;
  /** Service name. Not checked by the decoder: a receiver answers an invalid one with BAD_REQUEST. */
  service: string;
  /** Metadata (HTTP method, path and headers, or user metadata). */
  meta: Meta;
  /** Body. From the decoder, a view valid only during the sink call. */
  body: Uint8Array;
}

/**
 * REPLY (0x11): the answer to a job.
 *
 * @example
 * ```ts
 * import { NOT_APPLICABLE, type ReplyFrame } from "./ep_frames.ts";
 * const f: ReplyFrame = {
 *   type: "reply", id: 1, status: 200, freeSlots: NOT_APPLICABLE, meta: [],
 *   body: new Uint8Array(0),
 * };
 * console.assert(f.status === 200);
 * ```
 */
export interface ReplyFrame {
  /** Discriminant. */
  type: "reply";
  /** Job id of the REQUEST answered (≠ 0). */
  id: number;
  /** Status with HTTP meaning, 200–599; 200 = ok. */
  status: number;
  /** From a worker: its free slots after this reply; otherwise {@linkcode NOT_APPLICABLE}. */
  freeSlots: number;
  /** Reply metadata (HTTP response headers or user metadata). */
  meta: Meta;
  /** Body. From the decoder, a view valid only during the sink call. */
  body: Uint8Array;
}

/**
 * ERROR (0x12): a failed job (id ≠ 0) or a connection-level error (id = 0, then close).
 *
 * @example
 * ```ts
 * import type { ErrorFrame } from "./ep_frames.ts";
 * import { ErrorCode } from "./errors.ts";
 * const f: ErrorFrame = { type: "error", id: 1, code: ErrorCode.NO_SERVICE, message: 'No service "x"' };
 * console.assert(f.code === 101);
 * ```
 */
export interface ErrorFrame {
  /** Discriminant. */
  type: "error";
  /** Job id, or 0 for a connection-level error. */
  id: number;
  /** An `ErrorCode` value; unknown codes are passed through. */
  code: number;
  /** One line (no CR or LF), ≤ 1024 UTF-8 bytes. */
  message: string;
}

/**
 * CANCEL (0x13): best-effort cancellation of a job; empty payload.
 *
 * @example
 * ```ts
 * import type { CancelFrame } from "./ep_frames.ts";
 * const f: CancelFrame = { type: "cancel", id: 1 };
 * console.assert(f.type === "cancel");
 * ```
 */
export interface CancelFrame {
  /** Discriminant. */
  type: "cancel";
  /** Job id of the REQUEST to cancel (≠ 0). */
  id: number;
}

/**
 * Any EP frame, discriminated by `type`.
 *
 * @example
 * ```ts
 * import type { Frame } from "./ep_frames.ts";
 * function jobId(f: Frame): number {
 *   return f.type === "request" || f.type === "reply" ? f.id : 0;
 * }
 * console.assert(jobId({ type: "cancel", id: 3 }) === 0);
 * ```
 */
export type Frame =
  | HelloFrame
  | WelcomeFrame
  | RegisterFrame
  | ReadyFrame
  | HeartbeatFrame
  | DrainFrame
  | StatsRequestFrame
  | StatsFrame
  | AdminFrame
  | AdminResultFrame
  | RequestFrame
  | ReplyFrame
  | ErrorFrame
  | CancelFrame;

/**
 * Whether `name` is a valid service name: 1–64 characters of `[a-z0-9_.-]`, starting with
 * a letter or a digit.
 *
 * @example
 * ```ts
 * import { isServiceName } from "./ep_frames.ts";
 * console.assert(isServiceName("user.v2"));
 * console.assert(!isServiceName("-user") && !isServiceName("User"));
 * ```
 */
export function isServiceName(name: string): boolean {
  const n = name.length;
  if (n === 0 || n > MAX_SERVICE_NAME_BYTES) return false;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    const k = c < 0x80 ? SERVICE_BYTE[c] : 0;
    if (k === 0 || (i === 0 && k !== 1)) return false;
  }
  return true;
}

/**
 * Whether `key` is a valid meta key: 1–255 lower-case HTTP token characters
 * (`[a-z0-9!#$%&'*+.^_`|~-]`).
 *
 * @example
 * ```ts
 * import { isMetaKey } from "./ep_frames.ts";
 * console.assert(isMetaKey("content-type"));
 * console.assert(!isMetaKey("Content-Type") && !isMetaKey(""));
 * ```
 */
export function isMetaKey(key: string): boolean {
  const n = key.length;
  if (n === 0 || n > 255) return false;
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80 || META_KEY_BYTE[c] === 0) return false;
  }
  return true;
}
