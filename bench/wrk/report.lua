-- wrk script for the HTTP plaintext workloads.
--
-- WRK_PIPELINE=n (default 1) sends n requests back to back on a connection
-- before reading their n responses (HTTP/1.1 pipelining, as TechEmpower's
-- plaintext test does with 16). With n = 1 no request() function is defined,
-- so wrk keeps its static request and costs no Lua call per request.
--
-- done() prints one JSON line for bench/cmd/run. wrk counts every response
-- in "requests"; its latency is per batch (from sending the n requests to the
-- last of their n responses), in microseconds.

local depth = tonumber(os.getenv("WRK_PIPELINE") or "1") or 1

if depth > 1 then
   init = function(args)
      local r = {}
      for i = 1, depth do
         r[i] = wrk.format()
      end
      req = table.concat(r)
   end

   request = function()
      return req
   end
end

-- wrk 4.1's percentiles sometimes come back 0 although requests completed,
-- most often with pipelining (wg/wrk issues 236 and 354); such a value is
-- reported as -1, "unknown", rather than as a latency of zero.
local function pct(latency, p)
   local v = latency:percentile(p)
   if v <= 0 and latency.max > 0 then
      return -1
   end
   return v
end

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"tool":"wrk","pipeline":%d,"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
      '"lat_p50_us":%.1f,"lat_p99_us":%.1f,"lat_p999_us":%.1f,"lat_max_us":%.1f}\n',
      depth, summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      pct(latency, 50), pct(latency, 99), pct(latency, 99.9), latency.max))
end
