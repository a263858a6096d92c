-- Ends a sweep: deletes the node's indexes unless the node holds a lease again (it was
-- re-registered with the same id meanwhile; its indexes then belong to the new process).
-- KEYS[1]  the lease, P{node:<id>}:lease; KEYS[2] its user index, P{node:<id>}:users;
-- KEYS[3]  its room index, P{node:<id>}:rooms (one slot).
-- Returns 1 when it deleted the indexes (or there were none), 0 when the node is alive.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
return 1
