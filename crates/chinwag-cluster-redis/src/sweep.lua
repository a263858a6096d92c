-- Removes a dead node's connections from one user's sign-on hash (the sweep of a node whose
-- lease expired). Idempotent: two sweepers racing over one user remove each entry once, and
-- only the one that removed the user's last connection reports the user offline.
-- KEYS[1]  the user's sign-on hash (layout in sign_on.lua).
-- ARGV[1]  the dead node's field prefix, '<node>:'.
-- Returns {removed, offline, n}: how many entries it removed, 1 when it removed at least one
-- and the user has no connection left on any node (it went offline), else 0, and the user's
-- last sign-on seq (which versions the transition for the online list, online.lua).
local key, prefix = KEYS[1], ARGV[1]
local removed, left = 0, 0
for _, f in ipairs(redis.call('HKEYS', key)) do
  if f ~= 'n' then
    if string.sub(f, 1, #prefix) == prefix then
      redis.call('HDEL', key, f)
      removed = removed + 1
    else
      left = left + 1
    end
  end
end
local n = tonumber(redis.call('HGET', key, 'n') or '0') or 0
if removed > 0 and left == 0 then
  return {removed, 1, n}
end
return {removed, 0, n}
