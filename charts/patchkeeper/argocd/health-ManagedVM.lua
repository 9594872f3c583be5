-- Argo CD health of a patchkeeper ManagedVM, the operator's record of one VirtualMachine
-- (Argo CD shows it under the VM it belongs to). A VM flagged for retirement, or one two
-- windows fight over, is Degraded; a VM being patched, or woken to be scanned, is
-- Progressing. Runs in Argo CD's Lua 5.1 with `obj` set to the live object; returns `hs`.
local hs = { status = "Progressing", message = "waiting for the operator's first inventory" }
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

local phase = status.patch and status.patch.phase
if holds("Stalled") then
  hs.status = "Degraded"
  hs.message = said("Stalled")
elseif holds("Retire") then
  hs.status = "Degraded"
  hs.message = "flagged for retirement: " .. said("Retire")
-- A VM put back before it was patched (the run halted or passed its cutoff) is `Waiting`
-- with its outcome: it is out of the run, not in it.
elseif phase ~= nil and phase ~= "Done" and phase ~= "Failed" and phase ~= "Waiting" then
  hs.message = "patch run " .. (status.patch.run or "") .. ": " .. phase
elseif status.scanWake ~= nil then
  hs.message = "woken between windows to be scanned: " .. (status.scanWake.phase or "")
elseif holds("Reconciling") then
  hs.message = said("Reconciling")
elseif holds("Ready") then
  hs.status = "Healthy"
  hs.message = said("Ready")
end
return hs
