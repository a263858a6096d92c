-- ARGV: prefix, recipient, after (exclusive), max (> 0), now.
-- Returns up to max members "<id>:<expires_at>:<payload>" with id > after, in id order.
local r = ARGV[2]
purge(r, ARGV[5])
return redis.call('ZRANGEBYSCORE', k('q', r), '(' .. ARGV[3], '+inf', 'LIMIT', 0, ARGV[4])
