-- How much later a run of new slots must start so that no window holds more than
-- `per_second` slots (0: it fits, or no limit): calendar._window_shift, shared by the
-- scripts that place slots (prepended to them by worker.ratelimit.redis).
local function window_shift(taken, run, per_second, window, eps)
  if per_second <= 0 then return 0 end
  local marked = {}
  for _, t in ipairs(taken) do marked[#marked + 1] = {t, false} end
  for _, t in ipairs(run) do marked[#marked + 1] = {t, true} end
  table.sort(marked, function(a, b)
    return a[1] < b[1] or (a[1] == b[1] and (not a[2]) and b[2])
  end)
  for i = 1, #marked - per_second do
    local first, last = marked[i], marked[i + per_second]
    if last[1] - first[1] < window - eps then
      local new_first, old = nil, 0
      for k = i, i + per_second do
        if marked[k][2] then
          if new_first == nil then new_first = marked[k][1] end
        else
          old = old + 1
        end
      end
      if new_first ~= nil and old > 0 then
        if first[2] then return marked[i + 1][1] - first[1] + eps end
        return first[1] + window - new_first
      end
    end
  end
  return 0
end
