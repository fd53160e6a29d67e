-- resty.shardkit: shardkit's placement inside nginx, through LuaJIT's FFI.
--
-- For OpenResty, and for Debian's libnginx-mod-http-lua + lua-resty-core.
-- It loads libshardkit.so (`cargo build -p shardkit-ffi`, or --release) and
-- places keys on rings built from nginx upstream server lists:
--
--   local shardkit = require "resty.shardkit"
--   local ring, err = shardkit.new("127.0.0.1:8081 weight=2, 127.0.0.1:8082",
--                                  { algorithm = "maglev" })
--   ring:lookup("/a/b")            --> "127.0.0.1:8081"
--   ring:lookup_n("/a/b", 2)       --> { "127.0.0.1:8081", "127.0.0.1:8082" }
--   shardkit.balance(ring, nil, 2)  -- in balancer_by_lua: by $request_uri
--
-- Every placement decision is made by the library (core's
-- config::nginx::parse_upstream_with and the Sharder); this file only
-- converts arguments and results, as every binding does.
--
-- Where the library comes from (the first that names a file wins):
--   1. shardkit.load(path), or opts.lib on the first shardkit.new;
--   2. the environment variable SHARDKIT_LIB (nginx clears the environment
--      of its workers: keep it with `env SHARDKIT_LIB;` in nginx.conf);
--   3. libshardkit.so searched on package.cpath (`lua_package_cpath
--      "/opt/shardkit/lib/?.so;;"` finds /opt/shardkit/lib/libshardkit.so);
--   4. target/release, then target/debug, of the checkout this file is in
--      (lua/resty/shardkit.lua -> ../../target/...), for development;
--   5. the system's dynamic linker: ffi.load("shardkit") (ld.so.conf,
--      LD_LIBRARY_PATH).
-- A worker loads one library, once; later paths are ignored.

local ffi = require "ffi"

local C_NULL = nil
local ffi_new, ffi_string, ffi_cast = ffi.new, ffi.string, ffi.cast
local u8_ptr = ffi.typeof("const uint8_t *")
local type, tostring, tonumber = type, tostring, tonumber
local setmetatable, getmetatable = setmetatable, getmetatable
local math_min, math_floor = math.min, math.floor

local _M = { _VERSION = "0.1.0" }

-- Copied by hand from include/shardkit.h: only what this module calls.
-- shardkit_status is uint32_t in C before C23 (the header says so), and the
-- snapshot is an opaque struct.
local DECLS = [[
typedef uint32_t shardkit_status;
typedef struct shardkit_sharder shardkit_sharder;

const char *shardkit_version(void);
const char *shardkit_status_message(shardkit_status code);
shardkit_status shardkit_last_error(char *buf, size_t len, size_t *out_len);

shardkit_status shardkit_sharder_from_upstream(const uint8_t *list, size_t list_len,
                                               const uint8_t *algorithm, size_t algorithm_len,
                                               shardkit_sharder **out);
void shardkit_sharder_free(shardkit_sharder *s);
size_t shardkit_sharder_slot_count(const shardkit_sharder *s);
shardkit_status shardkit_sharder_node_name(const shardkit_sharder *s, uint32_t slot,
                                           uint8_t *buf, size_t buf_len, size_t *out_len);
shardkit_status shardkit_sharder_lookup(const shardkit_sharder *s, const uint8_t *key,
                                        size_t key_len, uint32_t *out_slot);
shardkit_status shardkit_sharder_lookup_n(const shardkit_sharder *s, const uint8_t *key,
                                          size_t key_len, size_t n, uint32_t *out_slots,
                                          size_t out_cap, size_t *out_count);
]]

-- A second copy of this module in the same VM (package.loaded reset, or a
-- copy under another name) must not redeclare: LuaJIT refuses redefinitions.
if not pcall(ffi.typeof, "shardkit_sharder") then
    ffi.cdef(DECLS)
end

local STATUS_OK = 0
local STATUS_BUFFER_TOO_SMALL = 9

local lib          -- the loaded library (nil until the first successful load)
local lib_path     -- what it was loaded from, for messages and shardkit.lib_path()

-- Out-params reused by every call: a worker runs one Lua call at a time, and
-- none of them yields while these are live.
local slot_out = ffi_new("uint32_t[1]")
local size_out = ffi_new("size_t[1]")
local ring_out = ffi_new("shardkit_sharder *[1]")
local err_buf_len = 1024
local err_buf = ffi_new("char[?]", err_buf_len)
local slots_cap = 0
local slots_buf

local function file_exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

-- The checkout's lua/ directory holds this file as resty/shardkit.lua.
local function checkout_candidates()
    local src = debug.getinfo(1, "S").source
    if src:sub(1, 1) ~= "@" then
        return {}
    end
    local dir = src:sub(2):match("^(.*)/lua/resty/[^/]+$")
    if not dir then
        return {}
    end
    return { dir .. "/target/release/libshardkit.so", dir .. "/target/debug/libshardkit.so" }
end

-- Loads the library from `path` or, with none, from the first place in the
-- search order above. Returns true, or nil and an error naming every place
-- tried. The first success sticks for the life of the worker.
function _M.load(path)
    if lib then
        return true
    end
    local tried = {}
    local candidates = {}
    if path ~= nil then
        if type(path) ~= "string" or path == "" then
            return nil, "shardkit: the library path must be a non-empty string, got "
                .. (type(path) == "string" and '""' or type(path))
        end
        candidates[1] = path
    else
        local env = os.getenv("SHARDKIT_LIB")
        if env and env ~= "" then
            candidates[#candidates + 1] = env
        end
        local found = package.searchpath and package.searchpath("libshardkit", package.cpath)
        if found then
            candidates[#candidates + 1] = found
        end
        for _, p in ipairs(checkout_candidates()) do
            if file_exists(p) then
                candidates[#candidates + 1] = p
            end
        end
        candidates[#candidates + 1] = "shardkit" -- the dynamic linker's search
    end
    for _, p in ipairs(candidates) do
        local ok, loaded = pcall(ffi.load, p)
        if ok then
            -- A library older than this file lacks the newest export: say so
            -- here, not as an "undefined symbol" at the first ring.
            local has = pcall(function() return loaded.shardkit_sharder_from_upstream end)
            if has then
                lib, lib_path = loaded, p
                return true
            end
            tried[#tried + 1] = p .. " (loaded, but it has no shardkit_sharder_from_upstream: "
                .. "an older build; rebuild with cargo build -p shardkit-ffi)"
        else
            tried[#tried + 1] = p .. " (" .. tostring(loaded) .. ")"
        end
    end
    return nil, "shardkit: cannot load libshardkit.so; tried " .. table.concat(tried, "; ")
        .. ". Set SHARDKIT_LIB (with `env SHARDKIT_LIB;` in nginx.conf), put it on "
        .. "lua_package_cpath, or call shardkit.load(path)"
end

-- The path the library was loaded from, or nil before the first load.
function _M.lib_path()
    return lib_path
end

-- The library's version ("0.1.0"), or nil and an error when it cannot load.
function _M.version()
    local ok, err = _M.load()
    if not ok then
        return nil, err
    end
    return ffi_string(lib.shardkit_version())
end

-- The detail of the call that just failed with `status`: the library's
-- message naming the bad value.
local function last_error(status)
    local rc = lib.shardkit_last_error(err_buf, err_buf_len, size_out)
    if rc == STATUS_OK then
        return ffi_string(err_buf, size_out[0])
    end
    if rc == STATUS_BUFFER_TOO_SMALL then
        local need = tonumber(size_out[0]) + 1
        local buf = ffi_new("char[?]", need)
        if lib.shardkit_last_error(buf, need, size_out) == STATUS_OK then
            return ffi_string(buf, size_out[0])
        end
    end
    return ffi_string(lib.shardkit_status_message(status))
end

local Ring = {}
Ring.__index = Ring

-- "127.0.0.1:8081" -> "127.0.0.1", 8081; "[::1]:80" -> "[::1]", 80;
-- "unix:/run/a.sock" -> itself, nil; no port -> 80, nginx's default.
local function peer_of(name)
    if name:sub(1, 5) == "unix:" then
        return name, nil
    end
    local v6, v6_port = name:match("^(%[.+%]):(%d+)$")
    if v6 then
        return v6, tonumber(v6_port)
    end
    local host, port = name:match("^([^:]+):(%d+)$")
    if host then
        return host, tonumber(port)
    end
    return name, 80
end

-- Builds a ring from an nginx upstream server list ("127.0.0.1:8081
-- weight=2, 127.0.0.1:8082"; `server` keywords and `;` separators as in an
-- upstream block are accepted). opts (optional):
--   algorithm: any shardkit algorithm name (default "ketama:nginx": the
--              placement of nginx `hash $key consistent` over these servers);
--   lib:       the library's path, used if it is not loaded yet.
-- Returns the ring, or nil and the library's error naming the bad value.
function _M.new(upstream_list, opts)
    if type(upstream_list) ~= "string" then
        return nil, "shardkit.new: the upstream list must be a string, got " .. type(upstream_list)
    end
    if opts ~= nil and type(opts) ~= "table" then
        return nil, "shardkit.new: opts must be a table, got " .. type(opts)
    end
    opts = opts or {}
    local algorithm = opts.algorithm
    if algorithm == nil then
        algorithm = "ketama:nginx"
    elseif type(algorithm) ~= "string" then
        return nil, "shardkit.new: opts.algorithm must be a string, got " .. type(algorithm)
    end
    local ok, err = _M.load(opts.lib)
    if not ok then
        return nil, err
    end
    ring_out[0] = C_NULL
    local rc = lib.shardkit_sharder_from_upstream(upstream_list, #upstream_list,
                                                  algorithm, #algorithm, ring_out)
    if rc ~= STATUS_OK then
        return nil, last_error(rc)
    end
    -- Freed when the ring is collected.
    local handle = ffi.gc(ring_out[0], lib.shardkit_sharder_free)
    ring_out[0] = C_NULL
    -- The snapshot is immutable, so its node names are read once, here, and
    -- lookups hand out Lua strings without copying names per request.
    local names = {}
    local slots = tonumber(lib.shardkit_sharder_slot_count(handle))
    local name_buf = ffi_new("uint8_t[?]", 256)
    local name_cap = 256
    for slot = 0, slots - 1 do
        rc = lib.shardkit_sharder_node_name(handle, slot, name_buf, name_cap, size_out)
        if rc == STATUS_BUFFER_TOO_SMALL then
            name_cap = tonumber(size_out[0])
            name_buf = ffi_new("uint8_t[?]", name_cap)
            rc = lib.shardkit_sharder_node_name(handle, slot, name_buf, name_cap, size_out)
        end
        if rc ~= STATUS_OK then
            return nil, last_error(rc)
        end
        names[slot] = ffi_string(name_buf, size_out[0])
    end
    -- Each node's host and port for balancer.set_current_peer, parsed once
    -- here rather than per request.
    local hosts, ports = {}, {}
    for slot = 0, slots - 1 do
        hosts[slot], ports[slot] = peer_of(names[slot])
    end
    return setmetatable({
        handle = handle,
        names = names,          -- slot (0-based) -> node name
        hosts = hosts,          -- slot -> host for set_current_peer
        ports = ports,          -- slot -> port (nil for unix:)
        size = slots,
        algorithm = algorithm,
        upstream = upstream_list,
    }, Ring)
end

-- The node serving `key` ("host:port" as written in the list), or nil and an
-- error (every node down, or a key that is not a string).
function Ring:lookup(key)
    if type(key) ~= "string" then
        return nil, "shardkit: the key must be a string, got " .. type(key)
    end
    local rc = lib.shardkit_sharder_lookup(self.handle, key, #key, slot_out)
    if rc ~= STATUS_OK then
        return nil, last_error(rc)
    end
    return self.names[slot_out[0]]
end

-- Up to `n` distinct nodes for `key`, primary first: where to retry. Nodes
-- marked `down` are skipped, so fewer than n come back only then. `n` must
-- be between 1 and the node count (the library's error names it otherwise).
-- lookup_n into the shared slot buffer, without a table: the count, or nil
-- and an error.
-- `key_len`: given when `key` is a char pointer (the request URI read in
-- place, see uri_in_place) rather than a string.
local function lookup_n_slots(ring, key, n, key_len)
    if key_len == nil and type(key) ~= "string" then
        return nil, "shardkit: the key must be a string, got " .. type(key)
    end
    if type(n) ~= "number" or n ~= math_floor(n) then
        return nil, "shardkit: n must be an integer, got " .. tostring(n)
    end
    local cap = n > 0 and n or 1
    if cap > slots_cap then
        slots_buf = ffi_new("uint32_t[?]", cap)
        slots_cap = cap
    end
    -- A negative n is passed on as 0, which the library names as out of range.
    local rc = lib.shardkit_sharder_lookup_n(ring.handle, key, key_len or #key, n > 0 and n or 0,
                                             slots_buf, slots_cap, size_out)
    if rc ~= STATUS_OK then
        return nil, last_error(rc)
    end
    return tonumber(size_out[0])
end

function Ring:lookup_n(key, n)
    local count, err = lookup_n_slots(self, key, n)
    if not count then
        return nil, err
    end
    local out = {}
    for i = 0, count - 1 do
        out[i + 1] = self.names[slots_buf[i]]
    end
    return out
end

-- Number of nodes on the ring.
function Ring:len()
    return self.size
end

-- The node names, in the order of the list.
function Ring:nodes()
    local out = {}
    for slot = 0, self.size - 1 do
        out[slot + 1] = self.names[slot]
    end
    return out
end

_M.Ring = Ring

-- For balancer_by_lua_block: sends this request to the node `ring` places
-- `key` on and, when nginx retries (proxy_next_upstream), to the next nodes
-- of ring:lookup_n(key, tries) in order, never the same node twice.
--
-- `tries` is the number of attempts, first one included (default: every
-- node); it is capped at the node count, and nginx's own
-- proxy_next_upstream_tries still applies. The first attempt computes the
-- list and calls set_more_tries(#list - 1), and keeps nothing: a request
-- that is not retried costs no table (ngx.ctx included). A retry computes
-- the same list again and keeps it in
-- ngx.ctx.shardkit = { peers = {...}, tried = i, failures = {...} }, which
-- nginx keeps across the retries of one request; each retry appends the
-- last attempt's outcome from get_last_failure() ("failed" or "next", and
-- the status) to ngx.ctx.shardkit.failures, for logging. So
-- ngx.ctx.shardkit is nil for a request served by its first node.
--
-- `key` nil places by $request_uri (nginx's `hash $request_uri`), read in
-- place: no Lua string is made for it, and the whole call stays in
-- LuaJIT's compiled code (ngx.var.request_uri makes a string per request,
-- and its getter returns to the uncompiled balancer chunk, which LuaJIT
-- cannot compile). The same placement as passing ngx.var.request_uri.
--
-- Returns true, or nil and an error: the caller logs it and answers, e.g.
--   local ok, err = shardkit.balance(ring, nil, 3)
--   if not ok then ngx.log(ngx.ERR, err) return ngx.exit(500) end
--
-- The request is looked up once per call: the attempt's outcome and the
-- retry count go to ngx_lua's C functions (declared by ngx.balancer, with
-- the signatures of the ngx_lua that runs) with that one pointer, where
-- ngx.balancer's wrappers would look it up again for each. The peer is set
-- through ngx.balancer itself, whose C signature differs between ngx_lua
-- releases.
local balancer -- ngx.balancer, required on the first balance()
local get_request, last_failure, more_tries, status_out, err_out
local PEER_STATES = { [1] = "keepalive", [2] = "next", [4] = "failed" }

local function balancer_init()
    balancer = require "ngx.balancer"
    get_request = require("resty.core.base").get_request
    last_failure = ffi.C.ngx_http_lua_ffi_balancer_get_last_failure
    more_tries = ffi.C.ngx_http_lua_ffi_balancer_set_more_tries
    status_out = ffi_new("int[1]")
    err_out = ffi_new("char *[1]")
end

-- $request_uri of request `r` in place: nginx's own bytes, through
-- lua-resty-core's FFI variable getter (declared by resty.core.var, which
-- ngx_lua loads).
local var_get
local uri_ptr, uri_len, uri_err, uri_lowcase
local function uri_in_place(r)
    if var_get == nil then
        require "resty.core.var"
        var_get = ffi.C.ngx_http_lua_ffi_var_get
        uri_ptr = ffi_new("char *[1]")
        uri_len = ffi_new("size_t[1]")
        uri_err = ffi_new("char *[1]")
        uri_lowcase = ffi_new("char[?]", 16)
    end
    local rc = var_get(r, "request_uri", 11, uri_lowcase, 0,
                       uri_ptr, uri_len, uri_err)
    if rc ~= 0 then
        return nil, "$request_uri: " .. (uri_err[0] ~= C_NULL and ffi_string(uri_err[0]) or "not found")
    end
    return ffi_cast(u8_ptr, uri_ptr[0]), tonumber(uri_len[0])
end

function _M.balance(ring, key, tries)
    if getmetatable(ring) ~= Ring then
        return nil, "shardkit.balance: no ring (got " .. tostring(ring)
            .. "); check the error logged where the ring was built"
    end
    if balancer == nil then
        balancer_init()
    end
    if tries == nil then
        tries = ring.size
    elseif type(tries) ~= "number" or tries < 1 or tries ~= math_floor(tries) then
        return nil, "shardkit.balance: tries must be an integer of at least 1, got "
            .. tostring(tries)
    end
    tries = math_min(tries, ring.size)
    local r = get_request()
    if r == nil then
        return nil, "shardkit.balance: no request (call it from balancer_by_lua*)"
    end
    local state = last_failure(r, status_out, err_out)
    if state == 0 then
        -- The first attempt.
        local key_len
        if key == nil then
            key, key_len = uri_in_place(r)
            if key == nil then
                return nil, "shardkit.balance: " .. key_len
            end
        end
        local count, err = lookup_n_slots(ring, key, tries, key_len)
        if not count then
            return nil, "shardkit.balance: " .. err
        end
        if count == 0 then
            return nil, "shardkit.balance: no node is up for key " .. tostring(key)
        end
        -- A warning (nginx's proxy_next_upstream_tries allows fewer) is
        -- not an error: nginx stops retrying at its own limit.
        if count > 1 and more_tries(r, count - 1, err_out) ~= 0 then
            return nil, "shardkit.balance: set_more_tries(" .. (count - 1) .. "): "
                .. (err_out[0] ~= C_NULL and ffi_string(err_out[0]) or "failed")
        end
        local slot = slots_buf[0]
        local ok, err3 = balancer.set_current_peer(ring.hosts[slot], ring.ports[slot])
        if not ok then
            return nil, "shardkit.balance: set_current_peer(" .. ring.names[slot] .. "): "
                .. tostring(err3)
        end
        return true
    end
    if state < 0 then
        return nil, "shardkit.balance: get_last_failure: "
            .. (err_out[0] ~= C_NULL and ffi_string(err_out[0]) or "failed")
    end
    local how, status = PEER_STATES[state] or "unknown", status_out[0]
    -- A retry: the same list as the first attempt (the ring is immutable).
    local ctx = ngx.ctx
    local state = ctx.shardkit
    if key == nil then
        key = ngx.var.request_uri
    end
    if state == nil then
        local peers, err = ring:lookup_n(key, tries)
        if not peers then
            return nil, "shardkit.balance: " .. err
        end
        state = { peers = peers, tried = 1, failures = {} }
        ctx.shardkit = state
    end
    state.failures[#state.failures + 1] = tostring(state.peers[state.tried]) .. " "
        .. tostring(how) .. (status and (" " .. status) or "")
    state.tried = state.tried + 1
    local name = state.peers[state.tried]
    if name == nil then
        return nil, "shardkit.balance: all " .. #state.peers .. " nodes for key "
            .. tostring(key) .. " failed: " .. table.concat(state.failures, ", ")
    end
    local host, port = peer_of(name)
    local ok, err = balancer.set_current_peer(host, port)
    if not ok then
        return nil, "shardkit.balance: set_current_peer(" .. name .. "): " .. tostring(err)
    end
    return true
end

return _M
