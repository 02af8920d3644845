-- Argo CD health check for prodaccess.io/v1alpha1 ProductionAccessGrant.
-- A grant that ran its course (Expired, Revoked) is Healthy: it finished, nothing is
-- wrong. Denied and Failed are Degraded; the steps before access is given are
-- Progressing; Active is Healthy once Ready=True for the current generation.
-- Written for Lua 5.1 (Argo CD's gopher-lua); tested with docs/argocd/test.lua.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- "Phase - Reason: message", leaving out a reason that only repeats the phase.
local function describe(phase, c)
  local text = phase
  if c == nil then
    return text
  end
  if c.reason ~= nil and c.reason ~= "" and c.reason ~= phase then
    text = text .. " - " .. c.reason
  end
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

local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end
if phase == nil or phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the grant"
  return hs
end

local ready = condition("Ready")
local observed = nil
if ready ~= nil then
  observed = ready.observedGeneration
end
if observed == nil then
  observed = obj.status.observedGeneration
end
if observed == nil or observed ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

hs.message = describe(phase, ready)
if phase == "Expired" or phase == "Revoked" then
  hs.status = "Healthy"
elseif phase == "Denied" or phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Pending" or phase == "AwaitingApproval" or phase == "Scheduled" then
  hs.status = "Progressing"
elseif phase == "Active" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
  elseif ready ~= nil and ready.status == "False" then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
