-- wrk script: counts redirects that carried a click id, so the benchmark can check
-- every one of them against the stored clicks afterwards.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  answered = 0
  without = 0
end

function response(status, headers, body)
  local location = headers["location"] or headers["Location"] or ""
  if string.find(location, "vclid=", 1, true) then
    answered = answered + 1
  else
    without = without + 1
  end
end

function done(summary, latency, requests)
  local a, w = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("answered")
    w = w + t:get("without")
  end
  io.write(string.format("VCLID_ANSWERED %d\nVCLID_MISSING %d\n", a, w))
  io.write(string.format("P99_US %d\n", latency:percentile(99)))
  io.write(string.format("RPS %.0f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("ERRORS %d\n", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
