-- A URI of its own per request (per wrk thread), so every request is placed
-- afresh, as a cache or shard tier sees it.
local counter = 0
id = 0 -- set per thread by setup (thread:set writes a global)
setup = function(thread)
  id = id + 1
  thread:set("id", id)
end
request = function()
  counter = counter + 1
  return wrk.format("GET", "/item/" .. id .. "/" .. counter .. "?v=" .. (counter % 97))
end
