-- Ends a sweep: deletes the node's user index unless the node holds a lease again (it was
-- re-registered with the same id meanwhile; its index then belongs to the new process).
-- KEYS[1]  the lease, P{node:<id>}:lease; KEYS[2] the index, P{node:<id>}:users (same slot).
-- Returns 1 when it deleted the index (or there was none), 0 when the node is alive.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
return 1
