-- Move a late call's slot to now: the steps of calendar.move_slot(), atomic on the server
-- and on its clock. KEYS[1]: the account's hash. ARGV: late, interval, per_second, group,
-- window, epsilon, spacing. Returns 1 if moved, 0 (nothing changed) if a window would then
-- hold more than per_second slots, or a slot be nearer to now than spacing.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local late = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local per_second = tonumber(ARGV[3])
local group = 'g:' .. ARGV[4]
local window = tonumber(ARGV[5])
local eps = tonumber(ARGV[6])
local spacing = tonumber(ARGV[7])
local keep = math.max(interval, window)
local fields = redis.call('HGETALL', KEYS[1])
local others, mine = {}, {}
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'g:' then
    for s in string.gmatch(fields[i + 1], '[^,]+') do
      local slot = tonumber(s)
      if slot > now - keep then
        if name == group then table.insert(mine, slot) else table.insert(others, slot) end
      end
    end
  end
end
local due, nearest = now - late, nil
for k, slot in ipairs(mine) do
  if nearest == nil or math.abs(slot - due) < math.abs(mine[nearest] - due) then nearest = k end
end
if nearest ~= nil and math.abs(mine[nearest] - due) <= interval / 2 then
  table.remove(mine, nearest)
end
local taken = {}
for _, s in ipairs(others) do table.insert(taken, s) end
for _, s in ipairs(mine) do table.insert(taken, s) end
table.sort(taken)
if window_shift(taken, {now}, per_second, window, eps) > 0 then return 0 end
for _, s in ipairs(taken) do
  if math.abs(s - now) < spacing - eps then return 0 end
end
table.insert(mine, now)
local text = {}
for _, s in ipairs(mine) do table.insert(text, string.format('%.6f', s)) end
redis.call('HSET', KEYS[1], group, table.concat(text, ','))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
