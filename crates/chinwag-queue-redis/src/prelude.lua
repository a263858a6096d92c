-- Shared by every chinwag-queue-redis script. ARGV[1] is the key prefix.
--
-- Keys (P = prefix, R = recipient id, which may contain any byte):
--   P q:R   sorted set: score = entry id, member = "<id>:<expires_at or empty>:<payload>"
--   P x:R   sorted set: score = expires_at, member = "<id>" (R's expiring entries)
--   P b:R   string: payload bytes queued for R (deleted when R's queue empties)
--   P s:R   string: R's id counter (INCR). Never deleted, so ids are never reused.
--   P g:total  string: payload bytes queued overall
--   P g:exp    sorted set: score = expires_at, member = "<id>:<R>" (for sweep)
-- Keys are built here from the prefix, so these scripts need a single Redis (not a cluster).
local P = ARGV[1]
local TOTAL = P .. 'g:total'
local GEXP = P .. 'g:exp'

local function k(kind, r)
  return P .. kind .. ':' .. r
end

-- id (string), expires_at (string, '' = none), payload length
local function parse(m)
  local a = string.find(m, ':', 1, true)
  local b = string.find(m, ':', a + 1, true)
  return string.sub(m, 1, a - 1), string.sub(m, a + 1, b - 1), #m - b
end

local function remove_member(r, m)
  local id, e, len = parse(m)
  local q = k('q', r)
  redis.call('ZREM', q, m)
  if e ~= '' then
    redis.call('ZREM', k('x', r), id)
    redis.call('ZREM', GEXP, id .. ':' .. r)
  end
  if redis.call('ZCARD', q) == 0 then
    redis.call('DEL', k('b', r))
  else
    redis.call('DECRBY', k('b', r), len)
  end
  redis.call('DECRBY', TOTAL, len)
end

local function remove_id(r, id)
  local ms = redis.call('ZRANGEBYSCORE', k('q', r), id, id)
  for _, m in ipairs(ms) do
    remove_member(r, m)
  end
  return #ms
end

-- Removes R's entries with expires_at <= now.
local function purge(r, now)
  local ids = redis.call('ZRANGEBYSCORE', k('x', r), '-inf', now)
  local n = 0
  for _, id in ipairs(ids) do
    local c = remove_id(r, id)
    if c == 0 then
      redis.call('ZREM', k('x', r), id)
    end
    n = n + c
  end
  return n
end

-- Removes up to `limit` expired entries of any recipient; returns {removed, examined}.
local function sweep(now, limit)
  local gms = redis.call('ZRANGEBYSCORE', GEXP, '-inf', now, 'LIMIT', 0, limit)
  local n = 0
  for _, gm in ipairs(gms) do
    local a = string.find(gm, ':', 1, true)
    local c = remove_id(string.sub(gm, a + 1), string.sub(gm, 1, a - 1))
    if c == 0 then
      redis.call('ZREM', GEXP, gm)
    end
    n = n + c
  end
  return {n, #gms}
end

-- Removes r's entries with id <= up_to ('+inf' = every one); returns how many.
local function ack(r, up_to)
  local ms = redis.call('ZRANGEBYSCORE', k('q', r), '-inf', up_to)
  for _, m in ipairs(ms) do
    remove_member(r, m)
  end
  return #ms
end
