-- wrk: one non-streaming chat completion per request (benches/mock-server.sh, mock-binding.sh).
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello world"}],"max_tokens":100}'
wrk.headers["Content-Type"] = "application/json"
