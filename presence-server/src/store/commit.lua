-- Commits one tenant's batch of directory writes atomically (a script runs
-- alone on its node, and every key lives in the tenant's hash slot).
--
-- KEYS: 1 tenant (string), 2 users, 3 teams, 4 members, 5 presence (hashes),
--       6 version (integer), 7 log (stream), 8 webhooks (hash)
-- ARGV: 1 node id, 2 the batch as JSON (logged verbatim), 3 log MAXLEN,
--       4 tenant id, 5 how to publish on the tenant's channel ('SPUBLISH' on
--       a Redis Cluster: a sharded channel of this slot; 'PUBLISH' on a
--       single Redis), 6 the tenant's channel, 7 the tenant-created channel
--       (always plain PUBLISH: it is not in this slot),
--       then one group of 3 per write: op, field, value
--   op "tenant"  SET KEYS[1] value
--   op "user" / "team" / "member" / "presence" / "webhook"  HSET into that hash
--   op "unmember"  HDEL members field
--   op "unwebhook" HDEL webhooks field
--   op "unteam"    HDEL teams field, and every members field "<field>\31..."
-- After the writes, publishes {"t": tenant id, "dir": new version} on the
-- tenant's channel (the nodes holding the tenant read its log on), and the
-- tenant id on the tenant-created channel when the batch writes the tenant
-- record (nodes that do not hold the tenant load it). Both from inside the
-- script, so no committed batch goes unannounced.
-- Returns {new version, log entry id}.

-- Redis does not roll back a script that fails half-way, so everything that
-- could fail is checked before the first write: the shape of ARGV and the
-- type of every key (a key of another type would fail with WRONGTYPE).
local expected = {'string', 'hash', 'hash', 'hash', 'hash', 'string', 'stream', 'hash'}
for i, want in ipairs(expected) do
  local got = redis.call('TYPE', KEYS[i])['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. got)
  end
end
local FIRST = 8
if #ARGV < FIRST - 1 or (#ARGV - FIRST + 1) % 3 ~= 0 then
  return redis.error_reply('ERR presence commit: malformed arguments')
end

local publish = ARGV[5]
if publish ~= 'PUBLISH' and publish ~= 'SPUBLISH' then
  return redis.error_reply('ERR presence commit: unknown publish command ' .. publish)
end

local hashes = {user = KEYS[2], team = KEYS[3], member = KEYS[4], presence = KEYS[5],
  webhook = KEYS[8]}
for i = FIRST, #ARGV, 3 do
  local op = ARGV[i]
  if op ~= 'tenant' and op ~= 'unmember' and op ~= 'unteam' and op ~= 'unwebhook'
      and hashes[op] == nil then
    return redis.error_reply('ERR presence commit: unknown op ' .. op)
  end
end

for i = FIRST, #ARGV, 3 do
  local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'tenant' then
    redis.call('SET', KEYS[1], value)
  elseif op == 'unmember' then
    redis.call('HDEL', KEYS[4], field)
  elseif op == 'unwebhook' then
    redis.call('HDEL', KEYS[8], field)
  elseif op == 'unteam' then
    redis.call('HDEL', KEYS[3], field)
    -- A plain prefix compare, not HSCAN MATCH: team ids may hold glob
    -- characters. The cost is one pass over the tenant's memberships.
    local prefix = field .. '\31'
    for _, f in ipairs(redis.call('HKEYS', KEYS[4])) do
      if string.sub(f, 1, #prefix) == prefix then
        redis.call('HDEL', KEYS[4], f)
      end
    end
  else
    redis.call('HSET', hashes[op], field, value)
  end
end

local v = redis.call('INCR', KEYS[6])
local id = redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[3], '*',
  'v', v, 'writes', ARGV[2], 'node', ARGV[1])
redis.call(publish, ARGV[6], cjson.encode({t = ARGV[4], dir = v}))
for i = FIRST, #ARGV, 3 do
  if ARGV[i] == 'tenant' then
    redis.call('PUBLISH', ARGV[7], ARGV[4])
    break
  end
end
return {v, id}
