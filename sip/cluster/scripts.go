package cluster

import "github.com/redis/go-redis/v9"

// The Lua scripts, run with EVALSHA (EVAL once after a Redis restart
// emptied its script cache). They name the keys they touch from the prefix
// (ARGV[1]) and node id (ARGV[2]): fine on a single Redis or behind
// Sentinel, not on Redis Cluster (refused by the configuration).

// admitLua checks and counts one call atomically.
//
// ARGV: prefix, node, call id, force ("1": count without checks and
// without taking rate tokens), number of groups, then for each group: its
// field in the count hash ("*" global, "u" the unauthenticated peers,
// "t:<trunk>"), max_calls, cps, the reason for each refusal. A limit of 0
// is no limit. The global group comes first; the checks go in group order,
// concurrency first, then rates (as the B2BUA's local admission).
//
// Returns {1, ""} (counted, or already counted on this node) or
// {0, reason, field}. Concurrent calls are summed over the live nodes:
// this one and those whose alive key exists. Rates are token buckets like
// the local ones (burst max(cps, 1), full when absent) in cps:<field>; a
// refused call takes no token, and nothing is counted unless every limit
// passed. The calls hash keeps the fields counted, "*" aside.
const admitLua = `
if redis.replicate_commands then redis.replicate_commands() end
local p, node, call = ARGV[1], ARGV[2], ARGV[3]
local force = ARGV[4] == '1'
local calls = p .. 'node:' .. node .. ':calls'
if redis.call('HEXISTS', calls, call) == 1 then return {1, ''} end
local lim, fields = {}, {}
for i = 1, tonumber(ARGV[5]) do
  local b = 5 + (i - 1) * 5
  local f = ARGV[b + 1]
  lim[i] = {f, tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5], p .. 'cps:' .. f}
  if f ~= '*' then fields[#fields + 1] = f end
end
if not force then
  local live = {node}
  for _, m in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
    if m ~= node and redis.call('EXISTS', p .. 'node:' .. m .. ':alive') == 1 then live[#live + 1] = m end
  end
  for _, l in ipairs(lim) do
    if l[2] > 0 then
      local sum = 0
      for _, m in ipairs(live) do
        sum = sum + (tonumber(redis.call('HGET', p .. 'node:' .. m .. ':count', l[1])) or 0)
      end
      if sum >= l[2] then return {0, l[4], l[1]} end
    end
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local left = {}
  for i, l in ipairs(lim) do
    if l[3] > 0 then
      local burst = math.max(l[3], 1)
      local h = redis.call('HMGET', l[6], 'tok', 'ts')
      local tok, ts = tonumber(h[1]), tonumber(h[2])
      if tok == nil or ts == nil then
        tok = burst
      else
        tok = math.min(burst, tok + math.max(0, now - ts) * l[3] / 1000)
      end
      if tok < 1 then return {0, l[5], l[1]} end
      left[i] = tok - 1
    end
  end
  for i, l in ipairs(lim) do
    if left[i] then
      redis.call('HSET', l[6], 'tok', string.format('%.17g', left[i]), 'ts', string.format('%d', now))
      redis.call('PEXPIRE', l[6], math.ceil(math.max(l[3], 1) / l[3] * 1000) + 1000)
    end
  end
end
redis.call('HSET', calls, call, cjson.encode(fields))
local cnt = p .. 'node:' .. node .. ':count'
redis.call('HINCRBY', cnt, '*', 1)
for _, f in ipairs(fields) do redis.call('HINCRBY', cnt, f, 1) end
return {1, ''}
`

// releaseLua uncounts one call of this node (from "*" and the fields it
// was counted in); a call it does not hold is nothing (0), so a second
// release is harmless.
//
// ARGV: prefix, node, call id.
const releaseLua = `
local p, node, call = ARGV[1], ARGV[2], ARGV[3]
local calls = p .. 'node:' .. node .. ':calls'
local v = redis.call('HGET', calls, call)
if not v then return 0 end
redis.call('HDEL', calls, call)
local cnt = p .. 'node:' .. node .. ':count'
local function dec(f)
  if redis.call('HINCRBY', cnt, f, -1) < 0 then redis.call('HSET', cnt, f, 0) end
end
dec('*')
for _, f in ipairs(cjson.decode(v)) do dec(f) end
return 1
`

// heartbeatLua refreshes this node's alive key and records, drops the
// nodes that are gone and hold nothing, and returns what the alive key
// held before ("" when absent): not this run's epoch means Redis lost the
// node's records (restart, failover to a stale replica, or a heartbeat gap
// longer than the TTL) or another process uses the node id.
//
// ARGV: prefix, node, epoch, ttl ms, stale ms.
const heartbeatLua = `
local p, node, epoch = ARGV[1], ARGV[2], ARGV[3]
local alive = p .. 'node:' .. node .. ':alive'
local prev = redis.call('GET', alive)
redis.call('SET', alive, epoch, 'PX', ARGV[4])
redis.call('SADD', p .. 'nodes', node)
redis.call('PEXPIRE', p .. 'node:' .. node .. ':calls', ARGV[5])
redis.call('PEXPIRE', p .. 'node:' .. node .. ':count', ARGV[5])
for _, m in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if m ~= node and redis.call('EXISTS', p .. 'node:' .. m .. ':alive', p .. 'node:' .. m .. ':count') == 0 then
    redis.call('SREM', p .. 'nodes', m)
  end
end
return prev or ''
`

// putLua writes a sealed state and tells the watchers, in one round trip.
//
// KEYS[1] the state key. ARGV: sealed value, ttl ms, channel, notice
// header (the value follows it in the notice).
const putLua = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ARGV[1])
return 1
`

// deleteLua removes a state and tells the watchers.
//
// KEYS[1] the state key. ARGV: channel, notice.
const deleteLua = `
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`

// rewriteLua writes again a state (or a delete) that did not reach Redis,
// unless another node wrote the call's state since: that node carries the
// call now (it took it over) and its state wins.
//
// KEYS[1] the state key. ARGV: sealed value, ttl ms, channel, notice (put:
// the header, the value follows), this node's id, "1" to delete instead.
// Returns 1 if written, 0 if the state is another node's.
const rewriteLua = `
local cur = redis.call('GET', KEYS[1])
if cur and (#cur < 2 or string.sub(cur, 3, 2 + string.byte(cur, 2)) ~= ARGV[5]) then return 0 end
if ARGV[6] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ARGV[1])
return 1
`

// scripts are the loaded scripts of one Cluster.
type scripts struct {
	admit, release, heartbeat, put, del, rewrite *redis.Script
}

func newScripts() scripts {
	return scripts{
		admit:     redis.NewScript(admitLua),
		release:   redis.NewScript(releaseLua),
		heartbeat: redis.NewScript(heartbeatLua),
		put:       redis.NewScript(putLua),
		del:       redis.NewScript(deleteLua),
		rewrite:   redis.NewScript(rewriteLua),
	}
}
