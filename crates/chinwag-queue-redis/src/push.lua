-- ARGV: push_fn.lua's arguments. Returns the new id (> 0), or -1 / -2 / -3 when a bound
-- refuses the push (then nothing changed).
return tonumber(push(ARGV))
