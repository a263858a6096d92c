-- Moves the online list and counter (RedisDirectory): applies one user's transition, online
-- or offline, reported by a sign-on, sign-off or sweep script. The transitions of one user
-- come from scripts on the user's key, but reach this script later, from any node, so two of
-- them may arrive in the other order: each carries a version that grows with the user's
-- transitions (2 x seq for the sign-on that took the user online, 2 x n + 1 for the script
-- that took it offline, n being the user's last sign-on seq then; even: online, odd: offline),
-- and only a version newer than the last applied one counts.
-- KEYS[1]  the counter, P{cluster}:online (users online)
-- KEYS[2]  the list, P{cluster}:online:list (sorted set of the users online, every score 0:
--          ordered by the bytes of the user id)
-- KEYS[3]  the versions, P{cluster}:online:versions (hash: user -> last version applied)
-- ARGV     the user id, the version (a decimal).
-- Returns 1 when the user joined the list, -1 when it left it, 0 when nothing changed (a
-- stale version, or the list already said so). The counter moves with the list, so it is the
-- list's length.
local user, version = ARGV[1], tonumber(ARGV[2])
if not version then
  return redis.error_reply('chinwag online: bad version ' .. tostring(ARGV[2]))
end
local seen = tonumber(redis.call('HGET', KEYS[3], user) or '')
if seen and version <= seen then
  return 0
end
redis.call('HSET', KEYS[3], user, ARGV[2])
if version % 2 == 0 then
  if redis.call('ZADD', KEYS[2], 0, user) == 1 then
    redis.call('INCRBY', KEYS[1], 1)
    return 1
  end
elseif redis.call('ZREM', KEYS[2], user) == 1 then
  redis.call('INCRBY', KEYS[1], -1)
  return -1
end
return 0
