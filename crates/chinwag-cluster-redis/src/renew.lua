-- Renews a node's lease if this process still holds it.
-- KEYS[1]  the lease, P{node:<id>}:lease, holding the process's random token.
-- ARGV[1]  the token; ARGV[2] the TTL in milliseconds.
-- Returns 1 when renewed, 0 when the key is gone or holds another process's token (the lease
-- expired: this process was declared dead and must fence itself).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
