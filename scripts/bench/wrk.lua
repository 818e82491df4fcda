-- wrk script used by scripts/bench.sh. One script, three modes chosen by BENCH_MODE:
--
--   get      GET the URL given to wrk, with `Authorization: Token $BENCH_TOKEN` when set.
--   comment  POST /api/articles/$BENCH_SLUG/comments as $BENCH_TOKEN; with BENCH_IDEMPOTENCY=1
--            every request carries its own Idempotency-Key ($BENCH_RUN-<thread>-<n>).
--   seed     POST /api/articles, at most BENCH_TOTAL articles in all, spread round-robin over
--            the tokens in the file BENCH_TOKENS_FILE (one token a line). BENCH_THREADS must
--            equal wrk's -t. A connection that would exceed its thread's share sends GET /healthz
--            instead, so no more than BENCH_TOTAL are written. wrk runs for its whole -d: the
--            caller counts what Redis holds, stops wrk, and seeds again if anything is missing.
--   login    POST /api/users/login with a wrong password for author<k>@bench.example, k going
--            round 1..BENCH_ACCOUNTS: a flood of failed logins. Counts the answers by status
--            (401/422 wrong password, 429 refused by the failed-login limit, 503 shed).
--
-- At the end one machine-readable line is printed:
--   BENCH_RESULT requests=N duration_us=N rps=F p50_us=N p99_us=N status_errors=N
--                socket_errors=N created=N failed=N rejected=N limited=N shed=N

local mode = os.getenv("BENCH_MODE") or "get"
local token = os.getenv("BENCH_TOKEN") or ""
local run_id = os.getenv("BENCH_RUN") or "run"

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local headers = { ["Content-Type"] = "application/json" }
if token ~= "" then
  headers["Authorization"] = "Token " .. token
end

local issued = 0
created = 0
failed = 0
local quota = 0
local tokens = {}
local tags = { "rust", "redis", "actix", "tracing", "kubernetes", "stateless", "chaos", "benchmark" }
local body_text = string.rep("A stateless replica keeps nothing between requests. ", 8)

function init(args)
  if mode == "seed" then
    for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
      if line ~= "" then
        tokens[#tokens + 1] = line
      end
    end
    local total = tonumber(os.getenv("BENCH_TOTAL"))
    local nthreads = tonumber(os.getenv("BENCH_THREADS"))
    quota = math.floor(total / nthreads)
    if tid < total % nthreads then
      quota = quota + 1
    end
  end
end

local verified = false

local function seed_request()
  -- wrk calls request() once on thread 0 to check it parses, and never sends that one.
  if tid == 0 and not verified then
    verified = true
    return wrk.format("GET", "/healthz")
  end
  issued = issued + 1
  if issued > quota then
    return wrk.format("GET", "/healthz")
  end
  -- Spread the authors evenly: thread t's n-th article goes to token (n * threads + t).
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  local seq = (issued - 1) * nthreads + tid
  local h = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Token " .. tokens[(seq % #tokens) + 1],
  }
  local t1 = tags[(seq % #tags) + 1]
  local t2 = tags[((seq + 3) % #tags) + 1]
  local body = string.format(
    '{"article":{"title":"Bench %s %d","description":"Seeded article %d","body":"%s","tagList":["%s","%s"]}}',
    run_id, seq, seq, body_text, t1, t2)
  return wrk.format("POST", "/api/articles", h, body)
end

local comment_path = "/api/articles/" .. (os.getenv("BENCH_SLUG") or "") .. "/comments"
local comment_body = '{"comment":{"body":"' .. body_text .. '"}}'
local idempotent = os.getenv("BENCH_IDEMPOTENCY") == "1"

local function comment_request()
  issued = issued + 1
  local h = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Token " .. token,
  }
  if idempotent then
    h["Idempotency-Key"] = string.format("%s-%d-%d", run_id, tid, issued)
  end
  return wrk.format("POST", comment_path, h, comment_body)
end

local accounts = tonumber(os.getenv("BENCH_ACCOUNTS") or "1")
rejected = 0
limited = 0
shed = 0

local function login_request()
  issued = issued + 1
  local k = ((issued * 7 + tid) % accounts) + 1
  local body = string.format(
    '{"user":{"email":"author%d@bench.example","password":"wrong-%s-%d-%d"}}', k, run_id, tid, issued)
  return wrk.format("POST", "/api/users/login", headers, body)
end

if mode == "seed" then
  request = seed_request
elseif mode == "comment" then
  request = comment_request
elseif mode == "login" then
  request = login_request
else
  wrk.headers = headers
end

function response(status, headers, body)
  if mode == "seed" then
    if status == 201 then
      created = created + 1
    elseif status ~= 200 then
      failed = failed + 1
    end
  elseif mode == "login" then
    if status == 429 then
      limited = limited + 1
    elseif status == 503 then
      shed = shed + 1
    elseif status == 401 or status == 422 or status == 403 then
      rejected = rejected + 1
    end
  end
end

function done(summary, latency, requests)
  local c, f, rj, li, sh = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    c = c + (thread:get("created") or 0)
    f = f + (thread:get("failed") or 0)
    rj = rj + (thread:get("rejected") or 0)
    li = li + (thread:get("limited") or 0)
    sh = sh + (thread:get("shed") or 0)
  end
  local e = summary.errors
  local rps = 0
  if summary.duration > 0 then
    rps = summary.requests / (summary.duration / 1e6)
  end
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d status_errors=%d socket_errors=%d created=%d failed=%d rejected=%d limited=%d shed=%d\n",
    summary.requests, summary.duration, rps, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, c, f, rj, li, sh))
end
