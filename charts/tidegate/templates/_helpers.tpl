{{/* The chart name. */}}
{{- define "tidegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name; cluster-scoped names carry it, so two releases never collide. */}}
{{- define "tidegate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tidegate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tidegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tidegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tidegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tidegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tidegate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The controller components (--components): the enabled ones of rollouts, analysis, gitops, notifications. */}}
{{- define "tidegate.controllerComponents" -}}
{{- $enabled := list }}
{{- range $name := list "rollouts" "analysis" "gitops" "notifications" }}
{{- if (index $.Values.components $name).enabled }}
{{- $enabled = append $enabled $name }}
{{- end }}
{{- end }}
{{- join "," $enabled }}
{{- end }}

{{/*
The bindings of one component ClusterRole to the controller ServiceAccount. Args: root, role
suffix, namespaces. No namespaces: one ClusterRoleBinding (the component acts cluster-wide);
otherwise a RoleBinding in each namespace, so the role's rights (Secrets included) hold only there.
*/}}
{{- define "tidegate.componentBindings" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $namespaces := index . 2 }}
{{- if not $namespaces }}
{{ include "tidegate.clusterRoleBinding" (list $root $suffix) }}
{{- else }}
{{- range $i, $ns := $namespaces }}
{{- if $i }}
---
{{- end }}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "tidegate.fullname" $root }}-{{ $suffix }}
  namespace: {{ $ns }}
  labels:
    {{- include "tidegate.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $suffix }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ include "tidegate.fullname" $root }}-{{ $suffix }}
subjects:
  - kind: ServiceAccount
    name: {{ include "tidegate.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}

{{/* A ClusterRoleBinding of one ClusterRole to the controller ServiceAccount. Args: root, role suffix. */}}
{{- define "tidegate.clusterRoleBinding" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ include "tidegate.fullname" $root }}-{{ $suffix }}
  labels:
    {{- include "tidegate.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $suffix }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ include "tidegate.fullname" $root }}-{{ $suffix }}
subjects:
  - kind: ServiceAccount
    name: {{ include "tidegate.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
