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

{{/* The controller Deployment's components (--components): the enabled ones of rollouts, analysis,
gitops (unless sharded into its own StatefulSet), notifications. */}}
{{- define "tidegate.controllerComponents" -}}
{{- $enabled := list }}
{{- range $name := list "rollouts" "analysis" "gitops" "notifications" }}
{{- if and (index $.Values.components $name).enabled (not (and (eq $name "gitops") (gt (int $.Values.components.gitops.shards) 0))) }}
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

{{/* Non-empty when any controller component runs (in the Deployment or the gitops shards). */}}
{{- define "tidegate.anyController" -}}
{{- range $name := list "rollouts" "analysis" "gitops" "notifications" }}
{{- if (index $.Values.components $name).enabled }}{{ $name }}{{ end }}
{{- end }}
{{- end }}

{{/* Non-empty when gitops runs sharded in its own StatefulSet. */}}
{{- define "tidegate.gitopsSharded" -}}
{{- if and .Values.components.gitops.enabled (gt (int .Values.components.gitops.shards) 0) }}true{{ end }}
{{- end }}

{{/*
The controller pod spec, shared by the Deployment and the gitops shards' StatefulSet.
Args (dict): root, components (the --components value), shards (0 or N).
*/}}
{{- define "tidegate.controllerPodSpec" -}}
{{- $root := .root }}
{{- $components := .components }}
{{- $shards := int .shards }}
{{- $v := $root.Values.controller }}
serviceAccountName: {{ include "tidegate.serviceAccountName" $root }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: controller
    image: {{ include "tidegate.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      - controller
      - --components={{ $components }}
      - --metrics-port={{ $v.metricsPort }}
      - --healthz-port={{ $v.healthzPort }}
      - --log-format={{ $v.logFormat }}
      {{- if eq $v.logLevel "debug" }}
      - --verbose
      {{- end }}
      {{- if $v.instanceID }}
      - --instance-id={{ $v.instanceID }}
      {{- end }}
      {{- range $v.watchNamespaces }}
      - --namespace={{ . }}
      {{- end }}
      {{- if has "gitops" (splitList "," $components) }}
      {{- range $root.Values.components.gitops.appNamespaces }}
      - --app-namespace={{ . }}
      {{- end }}
      {{- end }}
      {{- if $shards }}
      # one pod per ordinal (StatefulSet): no Lease to share between shards
      - --leader-elect=false
      {{- end }}
      {{- range $v.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      - name: POD_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      # gitops checkouts go to tempfile.mkdtemp() (gitops/handlers.py): the /tmp emptyDir
      - name: TMPDIR
        value: /tmp
      - name: HOME
        value: /tmp
      {{- if $shards }}
      # gitops/shard.py: the shard is this pod's StatefulSet ordinal (hostname suffix) of N
      - name: TIDEGATE_SHARDS
        value: {{ $shards | quote }}
      {{- end }}
      {{- with $v.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    ports:
      - name: metrics
        containerPort: {{ $v.metricsPort }}
      - name: healthz
        containerPort: {{ $v.healthzPort }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: healthz
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: healthz
      periodSeconds: 5
      timeoutSeconds: 5
      failureThreshold: 3
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmpSizeLimit }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
