-- ARGV: prefix, recipient, now. Returns how many unexpired entries the recipient has.
local r = ARGV[2]
purge(r, ARGV[3])
return redis.call('ZCARD', k('q', r))
