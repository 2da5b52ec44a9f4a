/**
 * ep: a Deno runtime for background micro services with a preemptive (pull) load balancer.
 *
 * @module
 */
export const VERSION = "0.1.0";
