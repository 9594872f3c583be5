-- Argo CD health of a patchkeeper PatchBaseline, read from its kstatus conditions: a
-- baseline the operator cannot use is Stalled, and so Degraded. Runs in Argo CD's Lua 5.1
-- with `obj` set to the live object; returns `hs`.
local hs = { status = "Progressing", message = "waiting for the operator to read the baseline" }
local status = obj.status
if status == nil then
  return hs
end

local conditions = {}
for _, condition in ipairs(status.conditions or {}) do
  conditions[condition.type] = condition
end
local function holds(type)
  return conditions[type] ~= nil and conditions[type].status == "True"
end
local function said(type)
  local condition = conditions[type]
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return condition.reason or ""
end

local generation = obj.metadata.generation or 0
if (status.observedGeneration or 0) < generation then
  hs.message = "the operator has not yet read generation " .. generation
  return hs
end
if holds("Stalled") then
  hs.status = "Degraded"
  hs.message = said("Stalled")
elseif holds("Reconciling") then
  hs.message = said("Reconciling")
elseif holds("Ready") then
  hs.status = "Healthy"
  hs.message = said("Ready")
end
return hs
