-- The API said "too frequent": no slot before now + ARGV[1] s (next_slot), and half the
-- rate until now + ARGV[2] s (slow_until), on the server's clock. KEYS[1]: the account's hash.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_slot = tonumber(redis.call('HGET', KEYS[1], 'next_slot') or '0')
redis.call('HSET', KEYS[1], 'next_slot', tostring(math.max(next_slot, now + tonumber(ARGV[1]))))
redis.call('HSET', KEYS[1], 'slow_until', tostring(now + tonumber(ARGV[2])))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
