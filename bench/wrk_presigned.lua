-- wrk script: cycle through presigned request targets, one per line of $WRK_TARGETS.
-- $WRK_METHOD is GET or PUT (PUT sends $WRK_BODY_BYTES bytes).
local targets = {}
for line in io.lines(os.getenv("WRK_TARGETS")) do targets[#targets + 1] = line end
local method = os.getenv("WRK_METHOD") or "GET"
local body = nil
if method == "PUT" then body = string.rep("x", tonumber(os.getenv("WRK_BODY_BYTES") or "4096")) end
local next_index = 0

request = function()
  next_index = next_index % #targets + 1
  return wrk.format(method, targets[next_index], nil, body)
end
