-- Cluster presence of one tenant: a user is online while at least one node
-- holds a claim on them. Nodes claim when their local engine sees the user
-- go online, renew the claim's lease while the user keeps interacting, and
-- release it at their local deadline. A lease that is not released (the node
-- died) ends at its score, or at the cutoff given for a dead node.
--
-- Every change of a user's global status bumps their `v` and is published,
-- from inside this script, so subscribers see transitions in `v` order.
--
-- KEYS[1] leases  zset   "<uid>\31<node>" -> lease end (ms)
-- KEYS[2] state   hash   uid -> {"s":0|1,"since":ms,"v":n,"seen":ms}
-- KEYS[3] claims  hash   uid -> ["node", ...]
-- KEYS[4] seq     string transitions published for this tenant (resync check)
-- ARGV[1] tenant id, ARGV[2] channel, ARGV[3] JSON array of operations:
--   {"op":"claim","u":uid,"n":node,"until":ms,"seen":ms,"now":ms}
--   {"op":"release","u":uid,"n":node,"at":ms,"seen":ms}
--   {"op":"force","u":uid,"at":ms,"close":code|0}  (close: tabs on every node
--                                                  are closed with it; 0 = none)
--   {"op":"sweep","now":ms,"dead":{"<node>":cutoff_ms,...}}
--   {"op":"floor","u":uid,"v":n}  raise v above n and republish (after an
--                                 outage in which a node showed its own v)
-- Returns the number of transitions published.

local leases, state, claims, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local tenant, channel = ARGV[1], ARGV[2]
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

-- `force` tells every node to drop its local proof of the user (logout,
-- deactivation); `close` asks them to close the user's tabs with that code.
local function emit(u, st, force, close)
  redis.call('INCR', seq)
  redis.call('PUBLISH', channel, cjson.encode({
    t = tenant, u = u, s = st.s, since = st.since, v = st.v, seen = st.seen,
    force = force or false, close = close or 0,
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

local function went_offline(u, at, seen)
  local st = get(u)
  if seen and seen > st.seen then st.seen = seen end
  if st.s == 1 then
    st.s = 0
    st.since = at
    st.v = st.v + 1
    put(u, st)
    emit(u, st)
  else
    put(u, st)
  end
end

local function release(u, n, at, seen)
  if redis.call('ZREM', leases, u .. '\31' .. n) == 0 then return end
  local list, kept = nodes_of(u), {}
  for _, x in ipairs(list) do
    if x ~= n then table.insert(kept, x) end
  end
  set_nodes(u, kept)
  if #kept == 0 then went_offline(u, at, seen) end
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
      emit(op.u, st)
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
    if st.s == 1 then
      st.s = 0
      st.since = op.at
      st.v = st.v + 1
      put(op.u, st)
    end
    -- Published even without a transition, so every node drops its proof
    -- and closes the tabs it was asked to close.
    emit(op.u, st, true, op.close)
  elseif op.op == 'floor' then
    local st = get(op.u)
    st.v = math.max(st.v, op.v) + 1
    put(op.u, st)
    emit(op.u, st)
  elseif op.op == 'sweep' then
    local due = redis.call('ZRANGEBYSCORE', leases, '-inf', op.now, 'WITHSCORES')
    for i = 1, #due, 2 do
      local u, n = string.match(due[i], '^(.*)\31([^\31]*)$')
      release(u, n, tonumber(due[i + 1]))
    end
    if next(op.dead) ~= nil then
      local all = redis.call('ZRANGE', leases, 0, -1, 'WITHSCORES')
      for i = 1, #all, 2 do
        local u, n = string.match(all[i], '^(.*)\31([^\31]*)$')
        local cutoff = op.dead[n]
        if cutoff and cutoff <= op.now then
          release(u, n, math.min(cutoff, tonumber(all[i + 1])))
        end
      end
    end
  end
end
return published
