-- json: a JSON example. POST a JSON object; the answer describes it.
--   curl localhost:7070/json -d '{"name":"ep","tags":["a","b"]}'
return function(req)
  local input = {}
  if #req.body > 0 then
    local ok, value = pcall(ep.json.decode, req.body)
    if not ok then
      return { status = 400, body = "Body is not valid JSON\n" }
    end
    input = value
  end
  local keys = {}
  if type(input) == "table" then
    for k in pairs(input) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
  end
  return {
    status = 200,
    headers = { ["content-type"] = "application/json" },
    body = ep.json.encode({
      received = input,
      keys = ep.json.array(keys),
      service = req.service,
      at_ms = ep.now(),
    }),
  }
end
