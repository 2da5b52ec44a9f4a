/**
 * ep's protocol layer: the sniffer that tells EP from HTTP/1.1 on one port, the EP codec
 * (see `SPEC.md`), and the strict HTTP/1.1 request parser, response writer and response
 * parser. Pure: no sockets, no timers.
 *
 * @example
 * ```ts
 * import { EpEncoder, EpDecoder, type Frame } from "./mod.ts";
 * const frames: Frame[] = [];
 * const dec = new EpDecoder({ frame: (f) => frames.push(f), error: (e) => { throw e; } });
 * dec.push(new EpEncoder().encode({ type: "ready", credit: 2 }));
 * console.assert(frames[0].type === "ready");
 * ```
 *
 * @module
 */
export * from "./errors.ts";
export * from "./sniff.ts";
export * from "./ep_frames.ts";
export * from "./ep_decoder.ts";
export * from "./ep_encoder.ts";
export * from "./http_parser.ts";
export * from "./http_writer.ts";
export * from "./http_response_parser.ts";
