-- ARGV: prefix, stream. Forgets the stream; returns 1 if it existed, else 0.
local m = meta(ARGV[2])
if not m then
  return 0
end
forget(ARGV[2], m)
return 1
