-- Signs a connection on (RedisSignOns::sign_on): decides atomically which of the user's
-- connections, on any node, the policy replaces. The rules are chinwag_hub::SignOnTable's:
-- the newest sign-on wins; Single replaces every connection, PerDevice those of the same
-- device, Multi the oldest beyond max (max 0 counts as 1).
--
-- KEYS[1]  the user's sign-on hash, P{user}:s:
--            n               the user's last sign-on seq (kept when the user goes offline, so
--                            a user's seqs never repeat)
--            <node>:<conn>   one per signed-on connection: '<seq>:<device>'
-- ARGV     the connection's field ('<node>:<conn>'), its device, the policy ('single',
--          'per_device' or 'multi'), Multi's max (a decimal; ignored by the others).
-- Returns {'ok', seq, online, then per replaced connection, oldest first: field, seq, device},
-- online '1' when the user had no connection on any node before (it came online), else '0';
-- or {'dup'} when the connection is signed on already (then nothing changed).
-- Everything is read and checked before the first write: a script that fails changed nothing.
local key, me, device, policy = KEYS[1], ARGV[1], ARGV[2], ARGV[3]

if redis.call('HEXISTS', key, me) == 1 then
  return {'dup'}
end

-- The user's connections, oldest first.
local list = {}
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if f ~= 'n' then
    local at = string.find(v, ':', 1, true)
    local seq = at and tonumber(string.sub(v, 1, at - 1))
    if not seq then
      return redis.error_reply('chinwag sign-on: corrupt entry ' .. f .. ' in ' .. key)
    end
    list[#list + 1] = {f = f, n = seq, s = string.sub(v, 1, at - 1), d = string.sub(v, at + 1)}
  end
end
table.sort(list, function(a, b) return a.n < b.n end)

local gone = {}
if policy == 'single' then
  gone = list
elseif policy == 'per_device' then
  for _, e in ipairs(list) do
    if e.d == device then
      gone[#gone + 1] = e
    end
  end
elseif policy == 'multi' then
  local max = math.max(1, tonumber(ARGV[4]) or 1)
  for i = 1, #list + 1 - max do
    gone[#gone + 1] = list[i]
  end
else
  return redis.error_reply('chinwag sign-on: unknown policy ' .. tostring(policy))
end

local seq = string.format('%d', redis.call('HINCRBY', key, 'n', 1))
local out = {'ok', seq, (#list == 0) and '1' or '0'}
for _, e in ipairs(gone) do
  redis.call('HDEL', key, e.f)
  out[#out + 1] = e.f
  out[#out + 1] = e.s
  out[#out + 1] = e.d
end
redis.call('HSET', key, me, seq .. ':' .. device)
return out
