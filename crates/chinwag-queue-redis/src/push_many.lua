-- ARGV: prefix, recipient, now, max entries per recipient, max bytes per recipient, max total
-- bytes, '1' = drop oldest / '0' = refuse, the channel of push notices, then pairs of payload and
-- expires_at ('' = none). Pushes each (push_fn.lua's push) in order, in one script: one round
-- trip and, with appendfsync always, one fsync for all. Returns each push's result: the new id
-- (> 0), or -1 / -2 / -3 when a bound refused that one (the others go on).
local results = {}
for i = 9, #ARGV, 2 do
  results[#results + 1] = tonumber(push({
    ARGV[1], ARGV[2], ARGV[i], ARGV[3], ARGV[i + 1],
    ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
  }))
end
return results
