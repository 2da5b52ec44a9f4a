-- echo: POST (or any method with a body) answers with the body; GET answers with the query,
-- percent-decoded (`/echo?hello%20there` → "hello there").
local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

return function(req)
  if req.method == "GET" or req.method == "HEAD" then
    return unescape(req.query_string)
  end
  return {
    status = 200,
    headers = { ["content-type"] = req.headers["content-type"] or "application/octet-stream" },
    body = req.body,
  }
end
