-- Argo CD health check for prodaccess.io/v1alpha1 AccessGroup.
-- Healthy once the operator has checked the IAM group and its policy for the current generation.
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

local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a Ready condition"
  return hs
end

local observed = ready.observedGeneration
if observed == nil and obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if observed == nil or observed ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = describe(ready)
end
return hs
