-- Shared by every history script of chinwag-queue-redis (RedisHistory). ARGV[1] is the key
-- prefix.
--
-- Keys (P = prefix, S = stream name, which may contain any byte):
--   P{h:S}:m   hash, the stream's meta:
--                e  epoch (decimal string, as the starting append gave it)
--                l  last offset appended
--                f  first offset physically held (l + 1 when none)
--                b  payload bytes held
--                c  payload bytes ever appended in this epoch (cumulative)
--                n  max_len of the last retention given
--                a  max_age in ms of the last retention given ('' = no age bound)
--                t  time of the last append (ms); publications' times never decrease
--   P{h:S}:p   stream (XADD): id "<offset>-0", fields t (at_ms), c (bytes appended before
--              this publication in the epoch), d (payload). Holds offsets f..=l, consecutive.
--   P h:streams  string: how many streams exist
--   P h:bytes    string: payload bytes held overall
--   P h:due      sorted set: member S, score = when S's oldest held publication ages out
--                (for an empty stream: when it may be forgotten); only streams with max_age
-- The two per-stream keys share the hash tag {h:S}; the h:* keys are global, touched by every
-- append, so the scripts need a single Redis (or a primary with replicas), not Redis Cluster.
local P = ARGV[1]
local STREAMS = P .. 'h:streams'
local BYTES = P .. 'h:bytes'
local DUE = P .. 'h:due'

local function mkey(s)
  return P .. '{h:' .. s .. '}:m'
end

local function pkey(s)
  return P .. '{h:' .. s .. '}:p'
end

local function str(n)
  return string.format('%d', n)
end

local function id(o)
  return str(o) .. '-0'
end

-- The stream's meta, or nil if it does not exist.
local function meta(s)
  local v = redis.call('HMGET', mkey(s), 'e', 'l', 'f', 'b', 'c', 'n', 'a', 't')
  if not v[1] then
    return nil
  end
  return {
    e = v[1],
    l = tonumber(v[2]),
    f = tonumber(v[3]),
    b = tonumber(v[4]),
    c = tonumber(v[5]),
    n = tonumber(v[6]),
    a = tonumber(v[7]),
    t = tonumber(v[8]),
  }
end

-- at_ms and the cumulative bytes before it, of the held publication at offset o.
local function entry(s, o)
  local r = redis.call('XRANGE', pkey(s), id(o), id(o))
  if not r[1] then
    error('chinwag history: stream ' .. s .. ' misses held offset ' .. str(o))
  end
  local f = r[1][2]
  return tonumber(f[2]), tonumber(f[4])
end

-- The first offset >= from (a held offset, or l + 1) whose publication is not aged under
-- max_age `a` (nil: none) at `now`: aged means at_ms + a <= now. Times never decrease along
-- the stream, so the aged publications are a prefix; binary search, O(log n) lookups.
local function first_live(s, from, l, t, a, now)
  if not a or from > l then
    return from
  end
  local cut = now - a
  if t <= cut then
    return l + 1
  end
  if entry(s, from) > cut then
    return from
  end
  local lo, hi = from, l
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    if entry(s, mid) <= cut then
      lo = mid
    else
      hi = mid
    end
  end
  return hi
end

-- Payload bytes of the held publications o..=l (o may be l + 1).
local function bytes_from(s, m_c, o, l)
  if o > l then
    return 0
  end
  local _, before = entry(s, o)
  return m_c - before
end

-- Forgets stream s (meta m) and its accounting.
local function forget(s, m)
  redis.call('DEL', mkey(s), pkey(s))
  redis.call('ZREM', DUE, s)
  redis.call('DECRBY', BYTES, str(m.b))
  redis.call('DECR', STREAMS)
end

-- Trims stream s's aged publications, forgets it if none is left; returns how many it trimmed.
local function sweep_stream(s, now)
  local m = meta(s)
  if not m or not m.a then
    redis.call('ZREM', DUE, s)
    return 0
  end
  local fl = first_live(s, m.f, m.l, m.t, m.a, now)
  local n = fl - m.f
  if fl > m.l then
    forget(s, m)
    return n
  end
  if n > 0 then
    local b = bytes_from(s, m.c, fl, m.l)
    redis.call('XTRIM', pkey(s), 'MINID', id(fl))
    redis.call('HSET', mkey(s), 'f', str(fl), 'b', str(b))
    redis.call('DECRBY', BYTES, str(m.b - b))
  end
  local at = entry(s, fl)
  redis.call('ZADD', DUE, at + m.a, s)
  return n
end

-- Sweeps up to `limit` streams that are due at `now`; returns {trimmed, examined}.
local function sweep(now, limit)
  local ss = redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, limit)
  local n = 0
  for _, s in ipairs(ss) do
    n = n + sweep_stream(s, tonumber(now))
  end
  return {n, #ss}
end
