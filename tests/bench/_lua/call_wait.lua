-- call_wait: waits in ep.call for the `callee` service (on another worker), passing on the
-- job time (`?ms=N` or a body "N"), and answers with the callee's reply body.
return function(req)
  local ms = req.query.ms or req.body or "0"
  local body, status = ep.call("callee", ms)
  if not body then return { status = 502, body = "callee: " .. tostring(status) } end
  return body
end
