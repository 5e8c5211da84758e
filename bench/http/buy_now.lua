-- wrk script: POST /rpc/buy_now with one random SKU of the 10,000, as one of
-- 64 customers (tokens made by bench/http.sh, one per line in tokens.txt).
local tokens = {}
for line in io.lines(os.getenv("BENCH_HTTP_TOKENS")) do tokens[#tokens + 1] = line end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
	local sku = math.random(1, 10000)
	wrk.headers["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)]
	return wrk.format(nil, "/rpc/buy_now", nil,
		'{"items": [{"sku_id": ' .. sku .. ', "qty": 1}]}')
end

-- p50 / p99 in microseconds and the non-2xx count, for bench/http.sh
done = function(summary, latency, requests)
	io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors_status=%d errors_other=%d\n",
		summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
		summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
