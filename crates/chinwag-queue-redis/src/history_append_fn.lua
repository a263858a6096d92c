-- The append (RedisHistory::append), as a function of its arguments A, so that a script can
-- run it beside another step (push_keep.lua). A: prefix, stream, now, new_epoch, max_len
-- (>= 1), max_age ms ('' = none), max_streams, max_total_bytes, the channel of notices ('' =
-- none), then the payloads (at least one; sizes already checked).
-- max_len and max_age are stored as given: near 2^64 they are not exact Lua numbers.
-- Returns {'ok', epoch, first, last}, or {'full', 'streams' | 'bytes'} when a bound refuses
-- the batch (then nothing of it was stored).
local function append(A)
  local s, now, new_epoch = A[2], tonumber(A[3]), A[4]
  local max_len = math.max(1, tonumber(A[5]))
  local age = tonumber(A[6])
  local max_streams, max_total = tonumber(A[7]), tonumber(A[8])
  local channel = A[9]
  local ARG0 = 9
  local k = #A - ARG0

  -- What the stream would be after the append: its meta now (nil: it starts), the base it
  -- grows from, the publications' time, the first and last offsets held after, and the
  -- bytes held after. Changes nothing.
  local function plan()
    local m = meta(s)
    local base = m or {e = new_epoch, l = 0, f = 1, b = 0, c = 0, t = 0}
    -- Times never decrease along a stream (nodes' clocks may differ slightly).
    local at = math.max(now, base.t)
    local last = base.l + k
    local first = math.max(base.f, last - max_len + 1)
    -- What aged under the retention given before is trimmed already (first never moves back).
    if m and m.a and first <= base.l then
      first = first_live(s, first, base.l, base.t, m.a, now)
    end
    if age then
      if first <= base.l then
        first = first_live(s, first, base.l, base.t, age, now)
      end
      if at + age <= now then
        first = last + 1
      end
    end
    local bytes = 0
    if first <= base.l then
      bytes = bytes_from(s, base.c, first, base.l)
    end
    for i = 1, k do
      if base.l + i >= first then
        bytes = bytes + #A[ARG0 + i]
      end
    end
    return m, base, at, first, last, bytes
  end

  -- Which bound the planned append would exceed, or nil.
  local function refusal(m, bytes)
    if not m and tonumber(redis.call('GET', STREAMS) or '0') + 1 > max_streams then
      return 'streams'
    end
    local held = m and m.b or 0
    if tonumber(redis.call('GET', BYTES) or '0') - held + bytes > max_total then
      return 'bytes'
    end
    return nil
  end

  local m, base, at, first, last, bytes = plan()
  -- Aged publications and streams count until swept or removed (chinwag_queue::history).
  local why = refusal(m, bytes)
  if why then
    return {'full', why}
  end

  local p = pkey(s)
  if not m then
    redis.call('DEL', p)
    redis.call('INCR', STREAMS)
  end
  local cum = base.c
  for i = 1, k do
    local payload = A[ARG0 + i]
    local o = base.l + i
    if o >= first then
      redis.call('XADD', p, id(o), 't', str(at), 'c', str(cum), 'd', payload)
    end
    cum = cum + #payload
  end
  if first > base.f then
    redis.call('XTRIM', p, 'MINID', id(first))
  end
  if channel ~= '' then
    -- Every publication appended, even one the retention trims at once: a listener numbers
    -- from them.
    for i = 1, k do
      redis.call('PUBLISH', channel, base.e .. ' ' .. str(base.l + i) .. '\n' .. A[ARG0 + i])
    end
  end
  redis.call('HSET', mkey(s),
    'e', base.e, 'l', str(last), 'f', str(first), 'b', str(bytes), 'c', str(cum),
    'n', A[5], 'a', A[6], 't', str(at))
  redis.call('INCRBY', BYTES, str(bytes - base.b))
  if age then
    local oldest = at
    if first <= base.l then
      oldest = entry(s, first)
    end
    redis.call('ZADD', DUE, oldest + age, s)
  else
    redis.call('ZREM', DUE, s)
  end
  return {'ok', base.e, str(first), str(last)}
end
