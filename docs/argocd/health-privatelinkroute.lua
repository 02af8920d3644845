-- Argo CD health check for prodaccess.io/v1alpha1 PrivateLinkRoute.
-- Healthy when the whole path (endpoint, DNS record, endpoint service, NLB, ALB, targets)
-- is Ready for the current generation. When it is not, a hop that failed (its reason
-- names a failure, see docs/argocd/README.md) makes the route Degraded; a hop still
-- being built or waiting (for example on endpoint acceptance) keeps it Progressing.
-- Written for Lua 5.1 (Argo CD's gopher-lua); tested with docs/argocd/test.lua.
local hs = {}

local failureSuffixes = {
  "Failed", "Error", "Invalid", "Denied", "NotFound", "Rejected", "Unhealthy", "Conflict",
}
local failureReasons = {
  InvalidSpec = true,
  CertificateNotIssued = true,
  AccountNotReady = true,
}

local function isFailure(reason)
  if reason == nil then
    return false
  end
  if failureReasons[reason] then
    return true
  end
  for _, suffix in ipairs(failureSuffixes) do
    if string.len(reason) >= string.len(suffix) and string.sub(reason, -string.len(suffix)) == suffix then
      return true
    end
  end
  return false
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local annotations = obj.metadata.annotations
if annotations ~= nil and annotations["prodaccess.io/paused"] == "true" then
  hs.status = "Suspended"
  hs.message = "Reconciliation is paused by the prodaccess.io/paused annotation"
  return hs
end

local conditions = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  conditions = obj.status.conditions
end
local ready = nil
for _, c in ipairs(conditions) do
  if c.type == "Ready" then
    ready = c
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a Ready condition"
  return hs
end

local observed = ready.observedGeneration
if observed == nil then
  observed = obj.status.observedGeneration
end
if observed == nil or observed ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  if obj.status.url ~= nil and obj.status.url ~= "" then
    hs.message = "Serving " .. obj.status.url
  else
    hs.message = describe(ready)
  end
  return hs
end

-- Ready is False or Unknown: find the first hop that failed.
for _, c in ipairs(conditions) do
  if c.type ~= "Ready" and c.status == "False" and isFailure(c.reason) then
    hs.status = "Degraded"
    hs.message = c.type .. " - " .. describe(c)
    return hs
  end
end
if ready.status == "False" and isFailure(ready.reason) then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
