-- wrk script for bench/events.sh: `signup` + `won` pairs through POST /api/v1/events.
--
--   wrk ... -s bench/events.lua URL -- API_KEY PROGRAM CODE1 [CODE2 ...]
--
-- Each thread makes fresh prospects (unique email per thread and counter) that
-- sign up with one of the referrers' codes, and sends each one's `won` only after
-- its `signup` was answered 2xx: the answer names the referral, and the `won`
-- carries that `referral_id` (wrk's request() does not say which connection it
-- is for, so "the next request on this connection" cannot be used to order the
-- pair; a `won` sent before its `signup` committed would make the prospect a
-- customer and reject the referral). Every request has its own Idempotency-Key;
-- occurred_at increases within a thread, and a pair never spans threads.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  key = args[1]
  program = args[2]
  codes = {}
  for i = 3, #args do table.insert(codes, args[i]) end
  n = 0
  ready = {}          -- referral ids whose signup was answered, waiting for their won
  head, tail = 1, 0
  signups_sent, wons_sent = 0, 0
  signup_ok, won_ok, won_stage, no_referral, non2xx = 0, 0, 0, 0, 0
  first_error = ""
  base = os.time() - 3 * 86400  -- occurred_at: the past, one second further per request
  run = string.format("%x", os.time())  -- keys and emails unique across runs on one server
end

local function at()
  n = n + 1
  return os.date("!%Y-%m-%dT%H:%M:%SZ", base + n)
end

local function post(body)
  return wrk.format("POST", "/api/v1/events", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("bench-%s-%d-%d", run, id, n),
  }, body)
end

function request()
  local when = at()
  if head <= tail then
    local referral = ready[head]
    ready[head] = nil
    head = head + 1
    wons_sent = wons_sent + 1
    return post(string.format(
      '{"type":"won","program":"%s","occurred_at":"%s","referral_id":"%s"}', program, when, referral))
  end
  signups_sent = signups_sent + 1
  local code = codes[(n % #codes) + 1]
  local email = string.format("p%d.%d@co%s-%d-%d.example", id, n, run, id, n)
  return post(string.format(
    '{"type":"signup","program":"%s","occurred_at":"%s","prospect":{"email":"%s"},"referral_code":"%s"}',
    program, when, email, code))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body or "", 1, 300) end
    return
  end
  if string.find(body, '"referral_created":true', 1, true) then
    signup_ok = signup_ok + 1
    local referral = string.match(body, '"referral_id":"([^"]+)"')
    tail = tail + 1
    ready[tail] = referral
  elseif string.find(body, '"stage_after":"won"', 1, true) then
    won_ok = won_ok + 1
    if string.find(body, '"changed":true', 1, true) then won_stage = won_stage + 1 end
  else
    no_referral = no_referral + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body or "", 1, 300) end
  end
end

function done(summary, latency, requests)
  local t = { signups_sent = 0, wons_sent = 0, signup_ok = 0, won_ok = 0, won_stage = 0, no_referral = 0, non2xx = 0 }
  local err = ""
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
    if err == "" then err = th:get("first_error") end
  end
  io.write(string.format("SIGNUPS_SENT %d\nWONS_SENT %d\n", t.signups_sent, t.wons_sent))
  io.write(string.format("SIGNUP_OK %d\nWON_OK %d\nWON_CHANGED %d\n", t.signup_ok, t.won_ok, t.won_stage))
  io.write(string.format("UNEXPECTED_2XX %d\nNON_2XX %d\n", t.no_referral, t.non2xx))
  if err ~= "" then io.write("FIRST_UNEXPECTED " .. err .. "\n") end
end
