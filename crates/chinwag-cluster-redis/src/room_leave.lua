-- Connections leave a room's member list (room_join.lua has the layout): ARGV[1] 'f' and
-- ARGV[2] one field '<node>:<conn>', or ARGV[1] 'p' and ARGV[2] a node's prefix '<node>:'
-- (the sweep of a dead node: every member of that node). Idempotent; a user whose last
-- connection left leaves the users' hash. Returns how many members it removed.
local m, u = KEYS[1], KEYS[2]
local fields = {}
if ARGV[1] == 'f' then
  fields[1] = ARGV[2]
else
  for _, f in ipairs(redis.call('HKEYS', m)) do
    if string.sub(f, 1, #ARGV[2]) == ARGV[2] then
      fields[#fields + 1] = f
    end
  end
end
local removed = 0
for _, f in ipairs(fields) do
  local v = redis.call('HGET', m, f)
  if v then
    redis.call('HDEL', m, f)
    removed = removed + 1
    local user = string.match(v, '^([^\n]*)')
    if redis.call('HINCRBY', u, user, -1) <= 0 then
      redis.call('HDEL', u, user)
    end
  end
end
return removed
