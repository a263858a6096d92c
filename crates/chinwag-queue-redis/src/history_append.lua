-- ARGV: history_append_fn.lua's arguments, and its result.
return append(ARGV)
