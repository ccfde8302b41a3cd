-- One benchmark scenario for wrk. BENCH_SPEC names a Lua file, written by
-- bench/load.py, that returns the scenario: method, paths, headers, and
-- optionally bodies (picked at random), unique_body (a format of the thread
-- id and a counter), tokens (refresh chains), expect (the one status that is
-- no error) and the request cap.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *now);
]])

local CLOCK_MONOTONIC = 1
local spec = dofile(os.getenv("BENCH_SPEC"))
local clock = ffi.new("bench_timespec")
local threads = {}

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  math.randomseed(id * 7919 + os.time())
  pool, statuses, seen = {}, {}, {}
  completed, repeats, counter = 0, 0, 0
  cap = math.ceil(spec.max_requests / spec.threads)
  -- wrk calls request() once in thread 1 before the run to check the script,
  -- and never sends that request: it must not use up a refresh token.
  checking = id == 1
  for i = id, #(spec.tokens or {}), spec.threads do
    table.insert(pool, spec.tokens[i])
  end
end

function request()
  local headers, body = spec.headers, nil
  if checking then
    checking = false
    return wrk.format(spec.method, spec.paths[1], headers, body)
  end
  first_us = first_us or now_us()
  if spec.tokens then
    -- Each chain's newest refresh token goes back to the pool when its answer
    -- comes, so every token is sent once: every request is a real rotation.
    headers = {}
    for name, value in pairs(spec.headers) do
      headers[name] = value
    end
    headers["Authorization"] = "Bearer " .. (table.remove(pool, 1) or "none")
  end
  if spec.bodies then
    body = spec.bodies[math.random(#spec.bodies)]
  end
  if spec.unique_body then
    counter = counter + 1
    body = string.format(spec.unique_body, id, counter)
  end
  return wrk.format(spec.method, spec.paths[math.random(#spec.paths)], headers, body)
end

-- A scenario may expect one status (a refusal expects 429); else any 2xx.
function answered_as_expected(status)
  if spec.expect then
    return status == spec.expect
  end
  return status >= 200 and status <= 299
end

function response(status, headers, body)
  last_us = now_us()
  completed = completed + 1
  if not answered_as_expected(status) then
    statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
  elseif spec.tokens then
    local token = body:match('"refreshToken"%s*:%s*"([^"]+)"')
    if token then
      if seen[token] then
        repeats = repeats + 1
      end
      seen[token] = true
      table.insert(pool, token)
    end
  end
  if completed >= cap then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  -- wrk's own duration runs to -d even when the cap stopped every thread
  -- early, so the rate is measured from the first request to the last answer.
  local first, last, repeated, merged, codes = math.huge, 0, 0, {}, {}
  for _, thread in ipairs(threads) do
    first = math.min(first, thread:get("first_us") or math.huge)
    last = math.max(last, thread:get("last_us") or 0)
    repeated = repeated + thread:get("repeats")
    for code, count in pairs(thread:get("statuses")) do
      merged[code] = (merged[code] or 0) + count
    end
  end
  for code, count in pairs(merged) do
    table.insert(codes, string.format('"%s": %d', code, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "span_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"repeats": %d, "statuses": {%s}, "transport": {"connect": %d, "read": %d, '
      .. '"write": %d, "timeout": %d}}\n',
    summary.requests, math.floor(math.max(last - first, 0)),
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    repeated, table.concat(codes, ", "),
    errors.connect, errors.read, errors.write, errors.timeout
  ))
end
