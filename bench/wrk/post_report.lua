-- POST one report per request, as bench/common.py's BODY; count answers by status.
-- BENCH_BODY: the JSON body; BENCH_REQUESTS: stop after this many answers and create the file
-- BENCH_DONE_FILE (wrk itself runs until --duration or SIGINT: bench/loadgen.py watches for the
-- file); BENCH_DELAY_MS: pause before each request on a connection (pacing: connections / rate);
-- BENCH_PATH: the endpoint. Prints one JSON line of figures at the end.
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/reports"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")

local threads = {}
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "0")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   accepted, refused, answered = 0, 0, 0
end

if pause > 0 then
   function delay()
      return pause
   end
end

function response(status, headers, body)
   answered = answered + 1
   if status == 202 then accepted = accepted + 1 else refused = refused + 1 end
   if limit > 0 and answered >= limit then
      io.open(os.getenv("BENCH_DONE_FILE"), "w"):close()
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local a, r = 0, 0
   for _, t in ipairs(threads) do
      a = a + t:get("accepted")
      r = r + t:get("refused")
   end
   local e = summary.errors
   io.write(string.format(
      '{"duration_us": %d, "requests": %d, "accepted": %d, "refused": %d, "socket_errors": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.duration, summary.requests, a, r, e.connect + e.read + e.write + e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
