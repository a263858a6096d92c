-- ARGV: prefix, then pairs of recipient and up_to. Applies each ack (ack.lua's) in order and
-- returns how many entries each removed.
local removed = {}
for i = 2, #ARGV, 2 do
  removed[#removed + 1] = ack(ARGV[i], ARGV[i + 1])
end
return removed
