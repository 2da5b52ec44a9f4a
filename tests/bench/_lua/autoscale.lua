-- The all-in-one ep of `autoscale_bench.ts`: a balancer whose own handler threads run the demo
-- `sleep` service (scripts/services/sleep.lua: holds the job with ep.sleep for `?ms=N` or a
-- body "N"), one job per thread at a time, on threads that scale between 1 and
-- EP_MAX_THREADS on the service's queue wait (target EP_TARGET_MS).
ep.listen { port = tonumber(ep.env("EP_PORT", "7070")) }
ep.config { concurrency = 1 }
ep.service("sleep", "../../../scripts/services/sleep.lua", {
  threads = { min = 1, max = tonumber(ep.env("EP_MAX_THREADS", "4")) },
  target_wait_ms = tonumber(ep.env("EP_TARGET_MS", "20")),
})
