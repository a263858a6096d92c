-- ARGV: prefix, recipient, up_to ('+inf' = everything). Returns how many entries it removed.
local r = ARGV[2]
local ms = redis.call('ZRANGEBYSCORE', k('q', r), '-inf', ARGV[3])
for _, m in ipairs(ms) do
  remove_member(r, m)
end
return #ms
