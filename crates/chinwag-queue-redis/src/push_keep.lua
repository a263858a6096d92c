-- A push and an append in one script (RedisQueue::push_keeping: a direct message queued for its
-- recipient and kept in its conversation's history, one round trip for both). Assembled as:
-- prelude.lua, push_fn.lua, history_prelude.lua, history_append_fn.lua, this. push captured the
-- queue prelude's helpers (its sweep) before the history prelude's shadow them.
-- ARGV: push_fn.lua's ten arguments, then history_append_fn.lua's from the second on (the
-- prefix is the first of both) with one payload.
-- Returns {id} (negative: a queue bound refused the push, nothing changed), or
-- {id, append's result...}: the push is done whatever the append's result ('full' leaves the
-- history as it was).
local id = push(ARGV)
if type(id) ~= 'string' then
  return {tostring(id)}
end
local a = {ARGV[1]}
for i = 11, #ARGV do
  a[#a + 1] = ARGV[i]
end
local r = append(a)
table.insert(r, 1, id)
return r
