-- ARGV: prefix, now, limit. Returns {trimmed, examined}; call again while examined == limit.
return sweep(ARGV[2], tonumber(ARGV[3]))
