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
- ``<base>:n:<series id>``: a native histogram's hash: one field per living process, its whole
  native histogram (``pytheus.native.encode_cells`` numbers separated by spaces), written
  absolutely, and ``_a`` for dead processes folded together. A scrape folds the field of a
  process that is dead into ``_a`` (merged exactly, at the lower schema of the two) and deletes
  it, so a series has one field per living process plus one, however many came and went.
- ``<base>:nb:<process>``: series id -> the native histogram of that process a scrape folded
  into ``_a``, kept while the process might still flush again (until its sequence number
  expires): a process that only stopped flushing for longer than its heartbeat takes it back
  out of ``_a`` at its next flush, so it is never counted twice. A process that exits says so
  (``bye``) and leaves nothing of the kind.
- ``<base>:quantiles``: the ids of the summary series that have quantiles.
- ``<base>:q:<series id>``: a summary's window (``pytheus.quantiles``), summed over every
  process: one field per age slot, ``"<empty after> <max age> <age buckets> <accuracy> <max
  buckets> <bucket id> <count> ..."``. A batch adds a process's new counts to them (and keeps
  at most ``max buckets`` ids of each sign, counting the lowest magnitudes at the lowest kept,
  as the sketch does); a scrape deletes the slots that left the window (``empty after``, by the
  writers' clock, before the server's time).
- ``<base>:seq:<process>``: the last batch sequence number applied for a process.
- ``<base>:skipped:<process>``: ``"<seq> <series id>..."``, the series whose entries the batch
  ``seq`` of that process skipped (see the ``c`` op), so that a batch sent again after its
  reply was lost reports them too.
- ``<base>:proc:<process>``: a heartbeat that expires when the process stops flushing, or that
  the process deletes with its last flush, at exit.
- ``<base>:recovering``: set for a few seconds when a process finds that Redis lost its data.
- ``<base>:server``: the ``run_id`` of the server that took the namespace's last writes. Another
  one may lack some of them: a replica that a failover promoted (the key came with the data), or
  a server that came back empty (a scraping process remembers the server and the processes of
  its last scrape). Every process then alive goes in ``<base>:resync`` (a sorted set: process ->
  when to give up on it, a heartbeat's time later), and scrapes answer 503 until each has
  written again (after sending what the server lacked) or its time is up.
- ``<base>:procs``: the processes that flush to the namespace (those whose heartbeat expired
  leave it at the next scrape); ``<base>:gone:<process>``: a process that said goodbye, for a
  heartbeat's time (no scrape waits for it).

A flush is idempotent: a batch carries a sequence number, and a batch whose number was already
applied is acknowledged without being applied again. So a flush whose reply was lost can be
retried without counting twice. Lua numbers are doubles, as in Python, and are written with 17
significant digits, so values round-trip exactly (HINCRBYFLOAT would refuse infinities and NaN).
"""

NATIVE = """
-- Native histograms as pytheus.native.encode_cells writes them, numbers separated by spaces:
-- schema, zero threshold, zero count, count, sum, number of buckets, then (code, count) pairs;
-- a bucket's code is 2 * index, plus 1 for a negative bucket.
local function fmt(x) return string.format('%.17g', x) end
local function native_parse(raw)
  local cells = {}
  for token in string.gmatch(raw, '%S+') do cells[#cells + 1] = tonumber(token) end
  local n = cells[6]
  if n == nil or #cells < 6 + 2 * n then return nil end
  for j = 1, 6 + 2 * n do
    if cells[j] == nil then return nil end
  end
  local h = {schema = cells[1], threshold = cells[2], zero = cells[3], count = cells[4],
             sum = cells[5], buckets = {}}
  for j = 7, 6 + 2 * n, 2 do h.buckets[cells[j]] = (h.buckets[cells[j]] or 0) + cells[j + 1] end
  return h
end
-- The buckets of h at a schema not above its own: bucket i goes to ceil(i / 2^(h.schema - s)),
-- exactly (a division by a power of two), as pytheus.native.reduce_index does.
local function native_buckets_at(h, schema)
  local scale, out = 2 ^ (h.schema - schema), {}
  for code, count in pairs(h.buckets) do
    local sign = code % 2
    local key = 2 * math.ceil((code - sign) / 2 / scale) + sign
    if key == 0 then key = 0 end  -- never -0
    out[key] = (out[key] or 0) + count
  end
  return out
end
-- a and b together at the lower of their schemas (their zero thresholds are equal)
local function native_merge(a, b)
  local schema = math.min(a.schema, b.schema)
  local merged = {schema = schema, threshold = a.threshold, zero = a.zero + b.zero,
                  count = a.count + b.count, sum = a.sum + b.sum,
                  buckets = native_buckets_at(a, schema)}
  for code, count in pairs(native_buckets_at(b, schema)) do
    merged.buckets[code] = (merged.buckets[code] or 0) + count
  end
  return merged
end
-- a without b, which was merged into it; nil when b is not part of a
local function native_without(a, b)
  if b.schema < a.schema or b.threshold ~= a.threshold then return nil end
  local rest = {schema = a.schema, threshold = a.threshold, zero = a.zero - b.zero,
                count = a.count - b.count, sum = a.sum - b.sum, buckets = a.buckets}
  if rest.zero < 0 or rest.count < 0 then return nil end
  for code, count in pairs(native_buckets_at(b, a.schema)) do
    local left = (rest.buckets[code] or 0) - count
    if left < 0 then return nil end
    rest.buckets[code] = left
  end
  return rest
end
local function native_format(h)
  local out = {fmt(h.schema), fmt(h.threshold), fmt(h.zero), fmt(h.count), fmt(h.sum), ''}
  for code, count in pairs(h.buckets) do
    if count > 0 then
      out[#out + 1] = fmt(code)
      out[#out + 1] = fmt(count)
    end
  end
  out[6] = fmt((#out - 6) / 2)
  return table.concat(out, ' ')
end
"""

# Both scripts first check that the server is the one that took the namespace's last writes.
SERVER = """
local function check_server(base, wait)
  local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
  local known = redis.call('GET', base .. ':server')
  if known == run_id then return run_id end
  redis.call('SET', base .. ':server', run_id)
  if not known then return run_id end
  -- another server took the earlier writes (a failover promoted a replica): it may lack some,
  -- so every process then alive must write again, or be found dead, before a scrape shows totals
  local deadline = tonumber(redis.call('TIME')[1]) + wait
  for _, p in ipairs(redis.call('SMEMBERS', base .. ':procs')) do
    if redis.call('EXISTS', base .. ':proc:' .. p) == 1 then
      redis.call('ZADD', base .. ':resync', 'NX', deadline, p)
    end
  end
  return run_id
end
"""

FLUSH = (
    NATIVE
    + SERVER
    + """
-- KEYS[1]: <base>:index, only to tell a cluster which node runs the script (not read here).
-- ARGV, as pytheus.backends.redis._protocol.FlushArgs names it:
--   ARGV[1] base                the namespace's base key
--   ARGV[2] process             the process's id (proc here)
--   ARGV[3] seq                 the batch's sequence number
--   ARGV[4] expected            the last batch the process had acknowledged: else a gap
--   ARGV[5] expire_seconds      how long a series lives unwritten (ttl here)
--   ARGV[6] heartbeat_seconds   how long the process lives without flushing (heartbeat here)
--   ARGV[7] now                 the process's wall clock: when the series were seen
--   ARGV[8] resync              '1': the process's totals, after Redis lost its batches
--   ARGV[9] recovering_ms       after a gap, how long scrapes wait for every process
--   ARGV[10] bye                '1': the process's last flush
--   ARGV[11...] the batch (batch_args): the number of removals, the removed series ids, then
--     each entry: series id, description, number of ops, then each op's op, field, value
-- Reply (FlushReply): {status, last batch Redis has from the process[, skipped series ids]}
local base, proc = ARGV[1], ARGV[2]
local seq, expected = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, heartbeat = tonumber(ARGV[5]), tonumber(ARGV[6])
local seq_ttl = math.max(ttl, 2 * heartbeat)  -- outlives any retry of a living process
local now, resync = ARGV[7], ARGV[8]
local seqkey, heartbeat_key = base .. ':seq:' .. proc, base .. ':proc:' .. proc
local last = tonumber(redis.call('GET', seqkey) or '-1')
local skipped_key = base .. ':skipped:' .. proc
check_server(base, heartbeat)
if ARGV[10] == '1' then
  -- bye: the process flushed for the last time (all acknowledged): dead from now on, and never
  -- back, so a scrape folds its native fields at once and keeps nothing to take back
  if last == seq then
    redis.call('DEL', heartbeat_key, seqkey, skipped_key)
    redis.call('SREM', base .. ':procs', proc)
    redis.call('ZREM', base .. ':resync', proc)
    redis.call('SET', base .. ':gone:' .. proc, '1', 'EX', heartbeat)  -- not to wait for
  end
  return {'bye', tostring(last)}
end
local folded_key = base .. ':nb:' .. proc
if redis.call('EXISTS', folded_key) == 1 then
  -- a scrape took this process for dead and folded its native fields into `_a`: take them
  -- back out, as they were; its next writes of them are absolute again
  local folded = redis.call('HGETALL', folded_key)
  for f = 1, #folded, 2 do
    local key = base .. ':n:' .. folded[f]
    local archived = redis.call('HGET', key, '_a')
    local whole, part = archived and native_parse(archived), native_parse(folded[f + 1])
    local rest = whole and part and native_without(whole, part)
    if rest then
      if rest.count > 0 then
        redis.call('HSET', key, '_a', native_format(rest))
      else
        redis.call('HDEL', key, '_a')
      end
      redis.call('HSETNX', key, proc, folded[f + 1])
    end
  end
  redis.call('DEL', folded_key)
end
redis.call('SET', heartbeat_key, '1', 'EX', heartbeat)
redis.call('SADD', base .. ':procs', proc)
if last >= 0 then redis.call('EXPIRE', seqkey, seq_ttl) end
if last >= seq then
  redis.call('ZREM', base .. ':resync', proc)  -- the server has all this process wrote
  local noted = redis.call('GET', skipped_key)
  local prefix = tostring(seq) .. ' '
  if noted and string.sub(noted, 1, #prefix) == prefix then
    return {'dup', tostring(last), string.sub(noted, #prefix + 1)}
  end
  return {'dup', tostring(last)}
end
if resync ~= '1' and last ~= expected then
  -- Redis lost what this process wrote: scrapes answer 503 until every process re-sent its
  -- totals (each does within a flush interval), rather than show numbers that look like resets
  redis.call('SET', base .. ':recovering', '1', 'PX', tonumber(ARGV[9]), 'NX')
  return {'gap', tostring(last)}
end
redis.call('ZREM', base .. ':resync', proc)  -- what it lacked of this process comes now
local function forget(sid)
  local meta = redis.call('HGET', base .. ':index', sid)
  if meta then
    for b = 0, #cjson.decode(meta)[6] do redis.call('HDEL', base .. ':e', sid .. ':' .. b) end
  end
  redis.call('DEL', base .. ':s:' .. sid)
  redis.call('DEL', base .. ':n:' .. sid)
  redis.call('SREM', base .. ':natives', sid)
  redis.call('DEL', base .. ':q:' .. sid)
  redis.call('SREM', base .. ':quantiles', sid)
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
-- "<empty after> <max age> <age buckets> <accuracy> <max buckets> <id> <count> ..." plus the
-- same from a batch: counts summed by bucket id; past max buckets ids of one sign, the lowest
-- magnitudes are counted at the lowest id kept (pytheus.quantiles._Buckets.raise_floor)
local function window_add(current, delta)
  local head, counts = {}, {}
  local function read(raw)
    local j, id = 0, nil
    for token in string.gmatch(raw, '%S+') do
      j = j + 1
      local number = tonumber(token)
      if j <= 5 then
        if j > 1 or not head[1] or number > head[1] then head[j] = number end
      elseif id == nil then
        id = number
      else
        counts[id] = (counts[id] or 0) + number
        id = nil
      end
    end
  end
  if current then read(current) end
  read(delta)
  local limit = head[5]
  for sign = 1, -1, -2 do
    local ids = {}
    for id in pairs(counts) do
      if id * sign > 0 then ids[#ids + 1] = id * sign end
    end
    if #ids > limit then
      table.sort(ids)
      local lowest = ids[#ids - limit + 1] * sign
      for j = 1, #ids - limit do
        counts[lowest] = counts[lowest] + counts[ids[j] * sign]
        counts[ids[j] * sign] = nil
      end
    end
  end
  local out = {fmt(head[1]), fmt(head[2]), fmt(head[3]), fmt(head[4]), fmt(head[5])}
  for id, count in pairs(counts) do
    out[#out + 1] = fmt(id)
    out[#out + 1] = fmt(count)
  end
  return table.concat(out, ' ')
end
local removals = tonumber(ARGV[11])
for r = 1, removals do forget(ARGV[11 + r]) end
local i = 12 + removals
local skipped = {}
while i <= #ARGV do
  local sid, meta, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  if n > 0 and ARGV[i] == 'c' and resync ~= '1'
      and redis.call('HEXISTS', base .. ':n:' .. sid, ARGV[i + 1]) == 0 then
    -- the process wrote its native field of the series before, and it is gone: the series was
    -- removed since. None of the entry applies (its retraction would take back what Redis no
    -- longer holds); the process counts again from its last batch before the removal.
    table.insert(skipped, sid)
    i, n = i + 3 * n, 0
  else
    redis.call('HSET', base .. ':index', sid, meta)
  end
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
    elseif op == 'c' then  -- checked above
    elseif op == 'w' then  -- add this process's new counts to one slot of a summary's window
      local key = base .. ':q:' .. sid
      redis.call('HSET', key, field, window_add(redis.call('HGET', key, field), value))
      redis.call('EXPIRE', key, ttl)
      redis.call('SADD', base .. ':quantiles', sid)
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
if #skipped == 0 then return {'ok', tostring(seq)} end
redis.call('SET', skipped_key, seq .. ' ' .. table.concat(skipped, ' '), 'EX', seq_ttl)
return {'ok', tostring(seq), table.concat(skipped, ' ')}
"""
)

# Reads every series of the namespace in one call. Series that expired leave the index here;
# gauge fields of dead processes are dropped or folded into `_a`, as the gauge's mode says, and
# native fields of dead processes are folded into `_a`.
SCRAPE = (
    NATIVE
    + SERVER
    + """
-- KEYS[1]: <base>:index, only to tell a cluster which node runs the script (not read here).
-- ARGV, as pytheus.backends.redis._protocol.scrape_args names it:
--   ARGV[1] base                the namespace's base key
--   ARGV[2] expire_seconds      how long a series lives unwritten (ttl here)
--   ARGV[3] heartbeat_seconds   how long to wait for a process (wait here)
--   ARGV[4] server              the server of this scraper's last reply (seen_server here)
--   ARGV[5...] processes        the processes of this scraper's last reply
-- Reply: ScrapeReply, nine parts (see the return at the end).
local base, ttl, wait, seen_server = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local index_key = base .. ':index'
local now = tonumber(redis.call('TIME')[1])
local run_id = check_server(base, wait)
if seen_server ~= '' and seen_server ~= run_id then
  -- this scraper last read another server, and this one may have come back empty (nothing
  -- told check_server): the processes of that last scrape that have neither written here
  -- (no heartbeat, no sequence number; those that came with the data are check_server's) nor
  -- ended since (said goodbye)
  for i = 5, #ARGV do
    local p = ARGV[i]
    if redis.call('EXISTS', base .. ':proc:' .. p, base .. ':seq:' .. p, base .. ':gone:' .. p)
        == 0 then
      redis.call('ZADD', base .. ':resync', 'NX', now + wait, p)
    end
  end
end
redis.call('ZREMRANGEBYSCORE', base .. ':resync', '-inf', now)  -- given up on: dead
local resyncing = redis.call('ZCARD', base .. ':resync') > 0
for _, p in ipairs(redis.call('SMEMBERS', base .. ':procs')) do
  if redis.call('EXISTS', base .. ':proc:' .. p) == 0 then
    redis.call('SREM', base .. ':procs', p)
  end
end
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', base .. ':seen', '-inf', now - ttl)) do
  local meta = redis.call('HGET', index_key, sid)
  if meta then
    for b = 0, #cjson.decode(meta)[6] do redis.call('HDEL', base .. ':e', sid .. ':' .. b) end
  end
  redis.call('HDEL', index_key, sid)
  redis.call('HDEL', base .. ':v', sid)
  redis.call('DEL', base .. ':n:' .. sid)
  redis.call('SREM', base .. ':natives', sid)
  redis.call('DEL', base .. ':q:' .. sid)
  redis.call('SREM', base .. ':quantiles', sid)
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
local folding = {sum = true, min = true, max = true, mostrecent = true}
local unit = string.char(31)  -- the unit separator; records are separated by char 30
-- A native field of a dead process is folded into `_a` (merged exactly, at the lower schema),
-- unless the zero thresholds differ (another version of the program): then it stays. What was
-- folded is kept for the process while its batch sequence lives: see `<base>:nb:` and FLUSH.
local function fold_natives(sid, fields)
  local key, archived, kept, dead = base .. ':n:' .. sid, nil, {}, {}
  for f = 1, #fields, 2 do
    if fields[f] == '_a' then
      archived = fields[f + 1]
    elseif is_alive(fields[f]) then
      table.insert(kept, fields[f]); table.insert(kept, fields[f + 1])
    else
      table.insert(dead, f)
    end
  end
  if #dead == 0 then return fields end
  local into = archived and native_parse(archived)
  if archived and not into then return fields end  -- unreadable: leave everything as it is
  local folded = {}
  for _, f in ipairs(dead) do
    local field, raw = fields[f], fields[f + 1]
    local part = native_parse(raw)
    if part and (not into or part.threshold == into.threshold) then
      into = into and native_merge(into, part) or part
      table.insert(folded, field)
      local left = redis.call('PTTL', base .. ':seq:' .. field)
      if left > 0 then
        redis.call('HSET', base .. ':nb:' .. field, sid, raw)
        redis.call('PEXPIRE', base .. ':nb:' .. field, left)
      end
    else
      table.insert(kept, field); table.insert(kept, raw)
    end
  end
  if #folded > 0 then  -- `_a` first: the hash never empties, so it keeps its expiry
    archived = native_format(into)
    redis.call('HSET', key, '_a', archived)
    for _, field in ipairs(folded) do redis.call('HDEL', key, field) end
  end
  if archived then table.insert(kept, '_a'); table.insert(kept, archived) end
  return kept
end
local gauges, natives = {}, {}
for _, sid in ipairs(redis.call('SMEMBERS', base .. ':natives')) do
  local fields = redis.call('HGETALL', base .. ':n:' .. sid)
  if #fields > 0 then
    fields = fold_natives(sid, fields)
    table.insert(natives, sid .. unit .. table.concat(fields, unit))
  else  -- expired
    redis.call('SREM', base .. ':natives', sid)
  end
end
-- Summary windows: the slots that left the window are deleted.
local windows = {}
for _, sid in ipairs(redis.call('SMEMBERS', base .. ':quantiles')) do
  local key = base .. ':q:' .. sid
  local fields, kept = redis.call('HGETALL', key), {}
  for f = 1, #fields, 2 do
    local empty_after = tonumber(string.match(fields[f + 1], '^%S+'))
    if empty_after and empty_after > now then
      table.insert(kept, fields[f]); table.insert(kept, fields[f + 1])
    else
      redis.call('HDEL', key, fields[f])
    end
  end
  if #kept > 0 then
    table.insert(windows, sid .. unit .. table.concat(kept, unit))
  else  -- expired, or every slot of it left the window
    redis.call('SREM', base .. ':quantiles', sid)
  end
end
-- Gauges: fields of dead processes are dropped or folded into `_a`, as the mode says.
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
-- Redis is recovering from lost data; then the native histograms' fields and the summaries'
-- windows, as the gauges'.
return {
  table.concat(index, unit),
  table.concat(redis.call('HGETALL', base .. ':v'), unit),
  table.concat(redis.call('HGETALL', base .. ':e'), unit),
  table.concat(gauges, string.char(30)),
  (resyncing and '1') or tostring(redis.call('EXISTS', base .. ':recovering')),
  table.concat(natives, string.char(30)),
  table.concat(windows, string.char(30)),
  run_id,
  table.concat(redis.call('SMEMBERS', base .. ':procs'), unit),
}
"""
)
