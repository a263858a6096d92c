-- ARGV: prefix, now, limit. Returns {removed, examined}; call again while examined == limit.
return sweep(ARGV[2], tonumber(ARGV[3]))
