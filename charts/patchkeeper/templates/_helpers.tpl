{{/*
The release's full name: the release name, prefixed with the chart's name unless it
already holds it. Kubernetes names are limited to 63 characters.
*/}}
{{- define "patchkeeper.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Chart.Name .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "patchkeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "patchkeeper.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "patchkeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels that select the operator's Pods; never change them, Deployments keep them. */}}
{{- define "patchkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "patchkeeper.labels" -}}
{{ include "patchkeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
What the operator does, as RBAC rules, verb by verb. No wildcard, and nothing on Secrets:
the patch Jobs mount the SSH Secret, the operator never reads it. `get` goes wherever
`list` does: it reveals nothing more. Users' objects get no `patch` on their spec: the
operator writes only their status.
*/}}
{{- define "patchkeeper.operatorRules" -}}
# Inventory: every VM and its running instance.
- apiGroups: ["kubevirt.io"]
  resources: ["virtualmachineinstances"]
  verbs: ["get", "list", "watch"]
# Waking and restoring a VM patches its run strategy; a retirement `Delete` deletes it.
- apiGroups: ["kubevirt.io"]
  resources: ["virtualmachines"]
  verbs: ["get", "list", "watch", "patch"{{ if .Values.rbac.deleteVirtualMachines }}, "delete"{{ end }}]
# A ManagedVM names its VM (and a patch Job its ManagedVM) as owner with
# blockOwnerDeletion, which clusters enforcing OwnerReferencesPermissionEnforcement allow
# only to whoever may update the owner's finalizers.
- apiGroups: ["kubevirt.io"]
  resources: ["virtualmachines/finalizers"]
  verbs: ["update"]
- apiGroups: ["patchkeeper.io"]
  resources: ["maintenancewindows", "patchbaselines", "patchexceptions"]
  verbs: ["get", "list", "watch"]
# ManagedVMs are the operator's own: made by server-side apply (which needs `create`),
# labelled with their verdict.
- apiGroups: ["patchkeeper.io"]
  resources: ["managedvms"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["patchkeeper.io"]
  resources:
    - maintenancewindows/status
    - patchbaselines/status
    - patchexceptions/status
    - managedvms/status
  verbs: ["patch"]
- apiGroups: ["patchkeeper.io"]
  resources: ["managedvms/finalizers"]
  verbs: ["update"]
# One Job per VM, run and step; a finished one is marked as recorded (patch), one whose
# VM's run is stopped is deleted.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The patch runner's summary is its Pod's termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# kube-rs's event recorder writes events.k8s.io/v1 Events, and patches a repeated one into
# a series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* The Lease of leader election, in the release namespace only. */}}
{{- define "patchkeeper.leaseRules" -}}
# `create` cannot be limited to a name: the API server does not know it yet.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ .Values.leaderElection.leaseName | quote }}]
  verbs: ["get", "update"]
{{- end -}}
