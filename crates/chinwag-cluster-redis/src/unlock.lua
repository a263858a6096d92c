-- Deletes a key if it still holds the caller's token (a sweep lock released by its holder
-- only; a lock that expired and was taken by another sweeper stays theirs).
-- KEYS[1]  the key; ARGV[1] the token. Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
