-- Argo CD health of a patchkeeper MaintenanceWindow, read from its kstatus conditions and
-- phase. Runs in Argo CD's Lua 5.1 with `obj` set to the live object; returns `hs`.
local hs = { status = "Progressing", message = "waiting for the operator to read the window" }
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
  if condition == nil then
    return ""
  end
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
  return hs
end
-- The failure budget ran out: the run in progress, or the last one, halted.
if status.phase == "Halted" then
  local run = status.currentRun or status.lastRun or {}
  hs.status = "Degraded"
  hs.message = run.message or said("Ready")
  if hs.message == "" then
    hs.message = "the run halted: its failure budget ran out"
  end
  return hs
end
if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = said("Ready")
  return hs
end
if holds("Reconciling") then
  hs.message = said("Reconciling")
  return hs
end
if holds("Ready") then
  hs.status = "Healthy"
  hs.message = said("Ready")
  return hs
end
return hs
