"""The two Lua scripts the Redis backend runs: one per flush, one per scrape.

Keys, under a base of ``pytheus`` or ``pytheus:<namespace>``:

- ``<base>:index``: hash, series id -> the series' description (JSON).
- ``<base>:v``: hash, series id -> the cells of a counter, histogram or summary, as numbers
  separated by spaces (counter: value; histogram: one count per bucket, then the sum; summary:
  count, sum). One hash for all of them, so a scrape reads them with one command.
- ``<base>:seen``: sorted set, series id -> when the series was last written (for expiry).
- ``<base>:e``: hash, ``<series id>:<bucket>`` -> the latest exemplar (JSON).
- ``<base>:s:<series id>``: a gauge's hash: one field per process,
  ``"value,last write,last set"``, and ``_a`` for dead processes folded together.
- ``<base>:natives``: the ids of the series that have a native part.
- ``<base>:n:<series id>``: a native histogram's hash: one field per process, its whole native
  histogram (``pytheus.native.encode_cells`` numbers separated by spaces), written absolutely.
  Fields of dead processes stay (they count, as a counter's past does) until the hash expires,
  ``expire_key_time`` after the last write by any process: a cost of one field per process that
  ever observed the series.
- ``<base>:seq:<process>``: the last batch sequence number applied for a process.
- ``<base>:proc:<process>``: a heartbeat that expires when the process stops flushing.
- ``<base>:recovering``: set for a few seconds when a process finds that Redis lost its data.

A flush is idempotent: a batch carries a sequence number, and a batch whose number was already
applied is acknowledged without being applied again. So a flush whose reply was lost can be
retried without counting twice. Lua numbers are doubles, as in Python, and are written with 17
significant digits, so values round-trip exactly (HINCRBYFLOAT would refuse infinities and NaN).
"""

FLUSH = """
local base, proc = ARGV[1], ARGV[2]
local seq, expected = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, heartbeat = tonumber(ARGV[5]), tonumber(ARGV[6])
local seq_ttl = math.max(ttl, 2 * heartbeat)  -- outlives any retry of a living process
local now, resync = ARGV[7], ARGV[8]
local seqkey = base .. ':seq:' .. proc
local last = tonumber(redis.call('GET', seqkey) or '-1')
redis.call('SET', base .. ':proc:' .. proc, '1', 'EX', heartbeat)
if last >= 0 then redis.call('EXPIRE', seqkey, seq_ttl) end
if last >= seq then return {'dup', tostring(last)} end
if resync ~= '1' and last ~= expected then
  -- Redis lost what this process wrote: scrapes answer 503 until every process re-sent its
  -- totals (each does within a flush interval), rather than show numbers that look like resets
  redis.call('SET', base .. ':recovering', '1', 'PX', tonumber(ARGV[9]), 'NX')
  return {'gap', tostring(last)}
end
local function forget(sid)
  local meta = redis.call('HGET', base .. ':index', sid)
  if meta then
    for b = 0, #cjson.decode(meta)[6] do redis.call('HDEL', base .. ':e', sid .. ':' .. b) end
  end
  redis.call('DEL', base .. ':s:' .. sid)
  redis.call('DEL', base .. ':n:' .. sid)
  redis.call('SREM', base .. ':natives', sid)
  redis.call('HDEL', base .. ':index', sid)
  redis.call('HDEL', base .. ':v', sid)
  redis.call('ZREM', base .. ':seen', sid)
end
local function add(current, delta)
  if not current then return delta end
  local cells = {}
  for token in string.gmatch(current, '%S+') do cells[#cells + 1] = tonumber(token) end
  local j, out = 0, {}
  for token in string.gmatch(delta, '%S+') do
    j = j + 1
    out[j] = string.format('%.17g', (cells[j] or 0) + tonumber(token))
  end
  return table.concat(out, ' ')
end
local removals = tonumber(ARGV[10])
for r = 1, removals do forget(ARGV[10 + r]) end
local i = 11 + removals
while i <= #ARGV do
  local sid, meta, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  redis.call('HSET', base .. ':index', sid, meta)
  for _ = 1, n do
    local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    if op == 'p' then  -- add to the packed cells of a counter, histogram or summary
      local values = base .. ':v'
      redis.call('HSET', values, sid, add(redis.call('HGET', values, sid), value))
      redis.call('ZADD', base .. ':seen', now, sid)
    elseif op == 't' then  -- still held by a living process: not expired
      if redis.call('HEXISTS', base .. ':v', sid) == 1 then
        redis.call('ZADD', base .. ':seen', now, sid)
      end
    elseif op == 'x' then  -- the latest exemplar of a bucket
      redis.call('HSET', base .. ':e', sid .. ':' .. field, value)
    elseif op == 'n' then  -- this process's whole native histogram
      local key = base .. ':n:' .. sid
      redis.call('HSET', key, field, value)
      redis.call('EXPIRE', key, ttl)
      redis.call('SADD', base .. ':natives', sid)  -- so a scrape visits only native series
    else  -- 's': this process's field of a gauge
      local key = base .. ':s:' .. sid
      redis.call('HSET', key, field, value)
      redis.call('EXPIRE', key, ttl)
    end
  end
end
redis.call('SET', seqkey, seq, 'EX', seq_ttl)
return {'ok', tostring(seq)}
"""

# Reads every series of the namespace in one call. Series that expired leave the index here;
# gauge fields of dead processes are dropped or folded into `_a`, as the gauge's mode says.
SCRAPE = """
local base, ttl = ARGV[1], tonumber(ARGV[2])
local index_key = base .. ':index'
local now = tonumber(redis.call('TIME')[1])
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', base .. ':seen', '-inf', now - ttl)) do
  local meta = redis.call('HGET', index_key, sid)
  if meta then
    for b = 0, #cjson.decode(meta)[6] do redis.call('HDEL', base .. ':e', sid .. ':' .. b) end
  end
  redis.call('HDEL', index_key, sid)
  redis.call('HDEL', base .. ':v', sid)
  redis.call('DEL', base .. ':n:' .. sid)
  redis.call('SREM', base .. ':natives', sid)
  redis.call('ZREM', base .. ':seen', sid)
end
local index = redis.call('HGETALL', index_key)
local alive = {}
local function is_alive(proc)
  local known = alive[proc]
  if known == nil then
    known = redis.call('EXISTS', base .. ':proc:' .. proc) == 1
    alive[proc] = known
  end
  return known
end
local function parse(v)
  local value, written, set = string.match(v, '^([^,]+),([^,]+),([^,]+)$')
  return tonumber(value), tonumber(written), tonumber(set)
end
local function fmt(x) return string.format('%.17g', x) end
local folding = {sum = true, min = true, max = true, mostrecent = true}
local unit = string.char(31)  -- the unit separator; records are separated by char 30
-- Gauges: fields of dead processes are dropped or folded into `_a`, as the mode says.
local gauges, natives = {}, {}
for _, sid in ipairs(redis.call('SMEMBERS', base .. ':natives')) do
  local fields = redis.call('HGETALL', base .. ':n:' .. sid)
  if #fields > 0 then
    table.insert(natives, sid .. unit .. table.concat(fields, unit))
  else  -- expired
    redis.call('SREM', base .. ':natives', sid)
  end
end
for i = 1, #index, 2 do
  local sid, meta = index[i], index[i + 1]
  -- the type is the second string of the JSON array, found without decoding it; a name holding
  -- a quote (possible in UTF-8 names) is escaped in the JSON and defeats it: then decode it
  local metric_type = string.match(meta, '^%["[^"]*","([^"]*)"') or cjson.decode(meta)[2]
  if metric_type == 'gauge' then
    local key = base .. ':s:' .. sid
    local fields = redis.call('HGETALL', key)
    local mode = cjson.decode(meta)[3]
    if #fields == 0 then
      redis.call('HDEL', index_key, sid)
    elseif mode ~= 'all' then
      local kept, changed = {}, false
      local av, aw, as = nil, 0, 0
      for f = 1, #fields, 2 do
        local field, v = fields[f], fields[f + 1]
        if field == '_a' then
          av, aw, as = parse(v)
        elseif is_alive(field) then
          table.insert(kept, field); table.insert(kept, v)
        else
          changed = true
          redis.call('HDEL', key, field)
          if folding[mode] then
            local dv, dw, ds = parse(v)
            if av == nil then av, aw, as = dv, dw, ds
            else
              if mode == 'sum' then av = av + dv
              elseif mode == 'min' then av = math.min(av, dv)
              elseif mode == 'max' then av = math.max(av, dv)
              elseif dw > aw then av = dv end
              aw, as = math.max(aw, dw), math.max(as, ds)
            end
          end
        end
      end
      if av ~= nil then
        local folded = fmt(av) .. ',' .. fmt(aw) .. ',' .. fmt(as)
        if changed then redis.call('HSET', key, '_a', folded) end
        table.insert(kept, '_a'); table.insert(kept, folded)
      end
      fields = kept
    end
    if #fields > 0 then
      table.insert(gauges, sid .. unit .. table.concat(fields, unit))
    end
  end
end
-- Four strings, their parts separated by the unit separator (never in JSON text, numbers or
-- process names): one string is far cheaper for the client to parse than many; then whether
-- Redis is recovering from lost data; then the native histograms' fields, as the gauges'.
return {
  table.concat(index, unit),
  table.concat(redis.call('HGETALL', base .. ':v'), unit),
  table.concat(redis.call('HGETALL', base .. ':e'), unit),
  table.concat(gauges, string.char(30)),
  tostring(redis.call('EXISTS', base .. ':recovering')),
  table.concat(natives, string.char(30)),
}
"""
