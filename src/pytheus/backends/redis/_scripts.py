"""The two Lua scripts the Redis backend runs: one per flush, one per scrape.

Keys, under a base of ``pytheus`` or ``pytheus:<namespace>``:

- ``<base>:index``: hash, series id -> the series' description (JSON).
- ``<base>:s:<series id>``: hash of the series' fields. Counters: ``v``; histograms: ``b0`` ..
  ``bN`` and ``sum``; summaries: ``count`` and ``sum``; gauges: one field per process,
  ``"value,last write,last set"``, and ``_a`` for dead processes folded together.
- ``<base>:seq:<process>``: the last batch sequence number applied for a process.
- ``<base>:proc:<process>``: a heartbeat that expires when the process stops flushing.
- ``<base>:born``: when this Redis first saw a flush (it vanishes when Redis restarts empty).

A flush is idempotent: a batch carries a sequence number, and a batch whose number was already
applied is acknowledged without being applied again. So a flush whose reply was lost can be
retried without counting twice.
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
redis.call('SET', base .. ':born', now, 'NX')
if last >= 0 then redis.call('EXPIRE', seqkey, seq_ttl) end
if last >= seq then return {'dup', tostring(last)} end
if resync ~= '1' and last ~= expected then return {'gap', tostring(last)} end
local removals = tonumber(ARGV[9])
for r = 1, removals do
  local sid = ARGV[9 + r]
  redis.call('DEL', base .. ':s:' .. sid)
  redis.call('HDEL', base .. ':index', sid)
end
local i = 10 + removals
while i <= #ARGV do
  local sid, meta, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local key = base .. ':s:' .. sid
  redis.call('HSET', base .. ':index', sid, meta)
  for _ = 1, n do
    local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    if op == 'i' then
      -- Lua numbers are doubles, as in Python; HINCRBYFLOAT would refuse infinities and NaN
      local current = tonumber(redis.call('HGET', key, field) or '0')
      redis.call('HSET', key, field, string.format('%.17g', current + tonumber(value)))
    else
      redis.call('HSET', key, field, value)
    end
  end
  redis.call('EXPIRE', key, ttl)
end
redis.call('SET', seqkey, seq, 'EX', seq_ttl)
return {'ok', tostring(seq)}
"""

# Reads every series of the namespace in one call. Series that expired leave the index here;
# gauge fields of dead processes are dropped or folded into `_a`, as the gauge's mode says.
SCRAPE = """
local base = ARGV[1]
local index_key = base .. ':index'
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
local out = {}
for i = 1, #index, 2 do
  local sid, meta = index[i], index[i + 1]
  local key = base .. ':s:' .. sid
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then
    redis.call('HDEL', index_key, sid)
  else
    local description = cjson.decode(meta)
    if description[2] == 'gauge' and description[3] ~= 'all' then
      local mode = description[3]
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
    table.insert(out, meta)
    table.insert(out, fields)
  end
end
return out
"""
