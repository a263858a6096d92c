-- Signs a connection off (RedisSignOns::sign_off), as chinwag_hub::SignOnTable::sign_off.
-- KEYS[1]  the user's sign-on hash (layout in sign_on.lua).
-- ARGV[1]  the connection's field ('<node>:<conn>').
-- Returns {1, n} when it removed the connection and the user has no connection left on any
-- node (n: the user's last sign-on seq, which versions the transition for the online list,
-- online.lua), else {0, 0} (also when the connection was not signed on, e.g. it was replaced).
local key = KEYS[1]
if redis.call('HDEL', key, ARGV[1]) == 0 then
  return {0, 0}
end
if redis.call('HLEN', key) - redis.call('HEXISTS', key, 'n') == 0 then
  return {1, tonumber(redis.call('HGET', key, 'n') or '0') or 0}
end
return {0, 0}
