-- wrk script for `make bench`: one scenario per run, chosen by env vars.
--   BENCH_MODE   healthz | get | deposit
--   BENCH_WALLETS  comma-free count of wallets named bench-<n> (1 = hot wallet)
--   BENCH_KEY    API key
--   BENCH_RUN    part of every Idempotency-Key: a new one per run, so that runs sharing
--                a wallet set never replay each other's keys (replays are cheaper)
-- Deposits carry a unique Idempotency-Key, like a careful client's would.
local mode = os.getenv("BENCH_MODE") or "healthz"
local wallets = tonumber(os.getenv("BENCH_WALLETS") or "1")
local key = os.getenv("BENCH_KEY") or ""
local prefix = os.getenv("BENCH_PREFIX") or "bench"
local run = os.getenv("BENCH_RUN") or "0"
local threads = {}
local counter = 0
local thread_id = 0
-- globals (not locals) so done() can read them per thread with thread:get()
ok, refused, failed = 0, 0, 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id
  math.randomseed(id * 7919)
end

function request()
  counter = counter + 1
  if mode == "healthz" then
    return wrk.format("GET", "/healthz")
  end
  local n = (wallets == 1) and 0 or math.random(0, wallets - 1)
  local headers = { ["Authorization"] = "Bearer " .. key }
  if mode == "get" then
    return wrk.format("GET", "/wallets/" .. prefix .. "-" .. n, headers)
  end
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = prefix .. "-" .. run .. "-" .. thread_id .. "-" .. counter
  return wrk.format("POST", "/wallets/" .. prefix .. "-" .. n .. "/deposit", headers, '{"amount": 1}')
end

function response(status, headers, body)
  if status < 300 then
    ok = ok + 1
  elseif status < 500 then
    refused = refused + 1
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local total_ok, total_refused, total_failed = 0, 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_refused = total_refused + t:get("refused")
    total_failed = total_failed + t:get("failed")
  end
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d ok=%d refused=%d failed=%d p50_us=%d p99_us=%d socket_errors=%d\n",
    summary.requests, summary.duration, total_ok, total_refused, total_failed,
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
