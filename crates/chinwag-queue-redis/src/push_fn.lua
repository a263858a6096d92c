-- The push (RedisQueue::push), as a function of its arguments A, so that a script can run it
-- beside another step (push_keep.lua). A: prefix, recipient, payload, now, expires_at ('' =
-- none), max entries per recipient, max bytes per recipient, max total bytes, '1' = drop
-- oldest / '0' = refuse, the channel of push notices ('' = none: RedisOptions::notices).
-- Returns the new id (a decimal string, > 0), or -1 / -2 / -3 (numbers) when the entries /
-- recipient bytes / total bytes bound refuses the push (then nothing changed).
local function push(A)
  local r, payload, now, exp = A[2], A[3], A[4], A[5]
  local max_n, max_b, max_t = tonumber(A[6]), tonumber(A[7]), tonumber(A[8])
  local drop_oldest = A[9] == '1'
  local size = #payload
  local q = k('q', r)

  purge(r, now)
  local total = tonumber(redis.call('GET', TOTAL) or '0')
  if total + size > max_t then
    -- At the overall bound: free every expired entry before deciding.
    repeat
      local res = sweep(now, 1000)
    until res[2] < 1000
    total = tonumber(redis.call('GET', TOTAL) or '0')
  end
  local n = redis.call('ZCARD', q)
  local b = tonumber(redis.call('GET', k('b', r)) or '0')

  -- Decide first (nothing changes on refusal), then drop and insert. Mirrors
  -- chinwag_queue::QueueConfig::plan_push.
  local ndrop = 0
  while true do
    local limit = 0
    if n + 1 > max_n then
      limit = -1
    elseif b + size > max_b then
      limit = -2
    elseif total + size > max_t then
      limit = -3
    end
    if limit == 0 then
      break
    end
    if not drop_oldest then
      return limit
    end
    local m = redis.call('ZRANGE', q, ndrop, ndrop)[1]
    if not m then
      return limit
    end
    local _, _, len = parse(m)
    n = n - 1
    b = b - len
    total = total - len
    ndrop = ndrop + 1
  end
  for _ = 1, ndrop do
    remove_member(r, redis.call('ZRANGE', q, 0, 0)[1])
  end

  local id = string.format('%d', redis.call('INCR', k('s', r)))
  redis.call('ZADD', q, id, id .. ':' .. exp .. ':' .. payload)
  if exp ~= '' then
    redis.call('ZADD', k('x', r), exp, id)
    redis.call('ZADD', GEXP, exp, id .. ':' .. r)
  end
  redis.call('INCRBY', k('b', r), size)
  redis.call('INCRBY', TOTAL, size)
  if A[10] ~= '' then
    redis.call('PUBLISH', A[10], id .. '\n' .. payload)
  end
  return id
end
