-- Cluster presence of one tenant: a user is online while at least one node
-- holds a claim on them. Nodes claim when their local engine sees the user
-- go online, renew the claim's lease while the user keeps interacting, and
-- release it at their local deadline. A lease that is not released (the node
-- died) ends at its score, or at the cutoff given for a dead node.
--
-- Every change of a user's global status bumps their `v`, is appended to the
-- tenant's transition feed and is published, all from inside this script,
-- so the feed holds every transition any node shows and subscribers see
-- transitions in `v` order.
--
-- KEYS[1] leases  zset   "<uid>\31<node>" -> lease end (ms)
-- KEYS[2] state   hash   uid -> {"s":0|1,"since":ms,"v":n,"seen":ms}
-- KEYS[3] claims  hash   uid -> ["node", ...]
-- KEYS[4] seq     string the tenant's last feed cursor
-- KEYS[5] events  stream the feed: id "0-<cursor>", field e = the event JSON
--                 {"id":"<tid>:<uid>:<v>","cursor","tenant","user","status",
--                  "at","v","reason"}
-- ARGV[1] tenant id, ARGV[2] the tenant's channel, ARGV[4] how to publish on
-- it: 'SPUBLISH' on a Redis Cluster (a sharded channel of the tenant's slot,
-- so the message stays on this shard), 'PUBLISH' on a single Redis;
-- ARGV[3] JSON array of operations:
--   {"op":"claim","u":uid,"n":node,"until":ms,"seen":ms,"now":ms}
--   {"op":"release","u":uid,"n":node,"at":ms,"seen":ms}
--   {"op":"force","u":uid,"at":ms,"close":code|0,"why":reason}
--                  (close: tabs on every node are closed with it; 0 = none;
--                   why: logout, deactivated or deleted)
--   {"op":"sweep","now":ms,"dead":{"<node>":cutoff_ms,...},"silent":[node,...]}
--                  (a due lease of a dead or silent node ends as node_lost)
--   {"op":"floor","u":uid,"v":n}  raise v above n and republish (after an
--                                 outage in which a node showed its own v)
-- Reasons: claim activity, release idle, force its why, sweep idle or
-- node_lost, floor reconciled.
-- Returns the number of transitions published.

local leases, state, claims, seq, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local tenant, channel = ARGV[1], ARGV[2]
local publish = ARGV[4] or 'PUBLISH'
if publish ~= 'PUBLISH' and publish ~= 'SPUBLISH' then
  return redis.error_reply('ERR presence: unknown publish command ' .. publish)
end
local ops = cjson.decode(ARGV[3])
local published = 0

local function get(u)
  local raw = redis.call('HGET', state, u)
  if raw then return cjson.decode(raw) end
  return { s = 0, since = 0, v = 0, seen = 0 }
end

local function put(u, st)
  redis.call('HSET', state, u, cjson.encode(st))
end

-- `reason` (nil: no transition, nothing appended) is the feed's reason; the
-- event goes to the feed with the next cursor before it is published.
-- `force` tells every node to drop its local proof of the user (logout,
-- deactivation); `close` asks them to close the user's tabs with that code;
-- `forced_at` is when it was asked, so proof and tabs newer than it survive.
local function emit(u, st, reason, force, close, forced_at)
  local cursor = 0
  if reason then
    cursor = redis.call('INCR', seq)
    local status = 'offline'
    if st.s == 1 then status = 'online' end
    redis.call('XADD', events, '0-' .. cursor, 'e', cjson.encode({
      id = tenant .. ':' .. u .. ':' .. st.v, cursor = cursor, tenant = tenant,
      user = u, status = status, at = st.since, v = st.v, reason = reason,
    }))
  end
  redis.call(publish, channel, cjson.encode({
    t = tenant, u = u, s = st.s, since = st.since, v = st.v, seen = st.seen,
    force = force or false, close = close or 0, cursor = cursor, reason = reason,
    at = forced_at or 0,
  }))
  published = published + 1
end

local function nodes_of(u)
  local raw = redis.call('HGET', claims, u)
  if raw then return cjson.decode(raw) end
  return {}
end

local function set_nodes(u, list)
  if #list == 0 then
    redis.call('HDEL', claims, u)
  else
    redis.call('HSET', claims, u, cjson.encode(list))
  end
end

local function went_offline(u, at, seen, reason)
  local st = get(u)
  if seen and seen > st.seen then st.seen = seen end
  if st.s == 1 then
    st.s = 0
    st.since = at
    st.v = st.v + 1
    put(u, st)
    emit(u, st, reason)
  else
    put(u, st)
  end
end

local function release(u, n, at, seen, reason)
  if redis.call('ZREM', leases, u .. '\31' .. n) == 0 then return end
  local list, kept = nodes_of(u), {}
  for _, x in ipairs(list) do
    if x ~= n then table.insert(kept, x) end
  end
  set_nodes(u, kept)
  if #kept == 0 then went_offline(u, at, seen, reason or 'idle') end
end

for _, op in ipairs(ops) do
  if op.op == 'claim' then
    local m = op.u .. '\31' .. op.n
    if not redis.call('ZSCORE', leases, m) then
      local list = nodes_of(op.u)
      table.insert(list, op.n)
      set_nodes(op.u, list)
    end
    redis.call('ZADD', leases, op['until'], m)
    local st = get(op.u)
    if op.seen > st.seen then st.seen = op.seen end
    if st.s == 0 then
      st.s = 1
      st.since = op.now
      st.v = st.v + 1
      put(op.u, st)
      emit(op.u, st, 'activity')
    else
      put(op.u, st)
    end
  elseif op.op == 'release' then
    release(op.u, op.n, op.at, op.seen)
  elseif op.op == 'force' then
    for _, n in ipairs(nodes_of(op.u)) do
      redis.call('ZREM', leases, op.u .. '\31' .. n)
    end
    redis.call('HDEL', claims, op.u)
    local st = get(op.u)
    local reason = nil
    if st.s == 1 then
      st.s = 0
      st.since = op.at
      st.v = st.v + 1
      put(op.u, st)
      reason = op.why
    end
    -- Published even without a transition (then not in the feed), so every
    -- node drops its proof and closes the tabs it was asked to close.
    emit(op.u, st, reason, true, op.close, op.at)
  elseif op.op == 'floor' then
    local st = get(op.u)
    st.v = math.max(st.v, op.v) + 1
    put(op.u, st)
    emit(op.u, st, 'reconciled')
  elseif op.op == 'cursor' then
    -- After Redis lost its last writes, seq may be behind cursors that were
    -- published (and read by consumers): never hand them out again.
    if tonumber(redis.call('GET', seq) or '0') < op.at_least then
      redis.call('SET', seq, op.at_least)
    end
  elseif op.op == 'sweep' then
    local lost = {}
    for n in pairs(op.dead) do lost[n] = true end
    for _, n in ipairs(op.silent or {}) do lost[n] = true end
    local due = redis.call('ZRANGEBYSCORE', leases, '-inf', op.now, 'WITHSCORES')
    for i = 1, #due, 2 do
      local u, n = string.match(due[i], '^(.*)\31([^\31]*)$')
      local reason = 'idle'
      if lost[n] then reason = 'node_lost' end
      release(u, n, tonumber(due[i + 1]), nil, reason)
    end
    if next(op.dead) ~= nil then
      local all = redis.call('ZRANGE', leases, 0, -1, 'WITHSCORES')
      for i = 1, #all, 2 do
        local u, n = string.match(all[i], '^(.*)\31([^\31]*)$')
        local cutoff = op.dead[n]
        if cutoff and cutoff <= op.now then
          release(u, n, math.min(cutoff, tonumber(all[i + 1])), nil, 'node_lost')
        end
      end
    end
  end
end
return published
