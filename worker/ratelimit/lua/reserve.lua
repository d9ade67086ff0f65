-- Reserve a group's next slots: the steps of calendar.place(), atomic on the server and on
-- its clock. KEYS[1]: the account's hash. ARGV: interval, ahead, group, epsilon, calls,
-- per_second, window, max_shifts. Returns {1, wait} when reserved, {0, wait} when the group
-- holds all its slots ahead (wait: until the first of them).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local ahead = tonumber(ARGV[2])
local group = 'g:' .. ARGV[3]
local eps = tonumber(ARGV[4])
local calls = tonumber(ARGV[5])
local per_second = tonumber(ARGV[6])
local window = tonumber(ARGV[7])
local step = interval
local slow_until = tonumber(redis.call('HGET', KEYS[1], 'slow_until') or '0')
if now < slow_until then interval = interval * 2 end
local keep = interval
if per_second > 0 and window > keep then keep = window end
local fields = redis.call('HGETALL', KEYS[1])
local all, mine, coming, first, recent = {}, {}, 0, nil, nil
local others = {}  -- each other group with a slot to come: its closest two slots' distance
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'g:' then
    local kept, last = {}, nil
    for s in string.gmatch(fields[i + 1], '[^,]+') do
      local slot = tonumber(s)
      if slot > now - keep then
        table.insert(kept, slot)
        table.insert(all, slot)
        if last == nil or slot > last then last = slot end
        if name == group then
          if slot > now - interval and (recent == nil or slot > recent) then recent = slot end
          if slot > now then
            coming = coming + 1
            if first == nil or slot < first then first = slot end
          end
        end
      end
    end
    if #kept == 0 then
      redis.call('HDEL', KEYS[1], name)
    elseif name == group then
      mine = kept
    elseif last > now then
      table.sort(kept)
      local closest = math.huge
      for k = 2, #kept do closest = math.min(closest, kept[k] - kept[k - 1]) end
      table.insert(others, closest)
    end
  end
end
if coming >= ahead then return {0, tostring(first - now)} end
local reach = 2 * (#others + 1) * interval
local busy = 1
for _, closest in ipairs(others) do
  if closest <= reach + eps then busy = busy + 1 end
end
local slot = math.max(now, tonumber(redis.call('HGET', KEYS[1], 'next_slot') or '0'))
if recent ~= nil then slot = math.max(slot, recent + busy * interval) end
table.sort(all)
local span = (calls - 1) * step
local run = {}
for _ = 1, tonumber(ARGV[8]) do
  for _, taken in ipairs(all) do
    if taken >= slot + span + interval - eps then break end
    if taken > slot - interval + eps then slot = taken + interval end
  end
  run = {}
  for i = 0, calls - 1 do table.insert(run, slot + i * step) end
  local shift = window_shift(all, run, per_second, window, eps)
  if shift <= 0 then break end
  slot = slot + shift
end
for _, s in ipairs(run) do table.insert(mine, s) end
local text = {}
for _, s in ipairs(mine) do table.insert(text, string.format('%.6f', s)) end
redis.call('HSET', KEYS[1], group, table.concat(text, ','))
redis.call('EXPIRE', KEYS[1], 3600)
return {1, tostring(slot - now)}
