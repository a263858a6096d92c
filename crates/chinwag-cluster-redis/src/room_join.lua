-- A connection joins a room's member list (cluster-wide members and counts).
-- KEYS[1] P{room:<name>}:m  hash  '<node>:<conn>' -> '<user>\n<device>'
-- KEYS[2] P{room:<name>}:u  hash  '<user>' -> its connections in the room (> 0)
-- ARGV: the field '<node>:<conn>', the user, the device. Idempotent: a field already there
-- changes nothing. Returns 1 when it added the member, else 0.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. '\n' .. ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  return 1
end
return 0
