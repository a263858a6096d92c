-- ARGV: prefix, stream, now, direction ('f': after `from`, oldest first; 'b': before `from`,
-- newest first), from, limit (a decimal count, 0 = state only).
-- Returns false if the stream does not exist, else {epoch, first, last, then per publication
-- offset, at_ms, payload}. Changes nothing: aged publications are skipped, not removed.
local s, now = ARGV[2], tonumber(ARGV[3])
local m = meta(s)
if not m then
  return false
end
local first = first_live(s, m.f, m.l, m.t, m.a, now)
local out = {m.e, str(first), str(m.l)}
local from = tonumber(ARGV[5])
local r = {}
if ARGV[6] ~= '0' and first <= m.l then
  if ARGV[4] == 'f' then
    local lo = math.max(from + 1, first)
    if lo <= m.l then
      r = redis.call('XRANGE', pkey(s), id(lo), '+', 'COUNT', ARGV[6])
    end
  else
    local hi = math.min(from - 1, m.l)
    if hi >= first then
      r = redis.call('XREVRANGE', pkey(s), id(hi), id(first), 'COUNT', ARGV[6])
    end
  end
end
for _, e in ipairs(r) do
  local sid = e[1]
  out[#out + 1] = string.sub(sid, 1, string.find(sid, '-', 1, true) - 1)
  out[#out + 1] = e[2][2]
  out[#out + 1] = e[2][6]
end
return out
