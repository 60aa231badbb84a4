{{/*
Helpers shared by the four Clusternet charts.  The same file is in every chart's templates/
(tests/unit/test_charts.py checks that the copies stay identical); edit all of them together.
*/}}

{{- define "clusternet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clusternet.fullname" -}}
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

{{- define "clusternet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clusternet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clusternet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "clusternet.labels" -}}
helm.sh/chart: {{ include "clusternet.chart" . }}
{{ include "clusternet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Chart.Name | trimPrefix "clusternet-" }}
app.kubernetes.io/part-of: clusternet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "clusternet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clusternet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "clusternet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* --feature-gates value: sorted Name=true|false pairs. */}}
{{- define "clusternet.featureGates" -}}
{{- $gates := list }}
{{- range $name, $on := .Values.featureGates }}
{{- $gates = append $gates (printf "%s=%t" $name $on) }}
{{- end }}
{{- join "," $gates }}
{{- end }}

{{/* The flags every component shares (generic and leader election), one list item a line. */}}
{{- define "clusternet.commonArgs" -}}
- --secure-port={{ .Values.securePort }}
- --bind-address={{ .Values.bindAddress }}
- --log-format={{ .Values.logging.format }}
- --v={{ .Values.logging.verbosity }}
- --kube-api-qps={{ .Values.kubeAPI.qps }}
- --kube-api-burst={{ .Values.kubeAPI.burst }}
{{- with (include "clusternet.featureGates" .) }}
- --feature-gates={{ . }}
{{- end }}
{{- if hasKey .Values "leaderElection" }}
- --leader-elect={{ .Values.leaderElection.enabled }}
{{- if .Values.leaderElection.enabled }}
- --leader-elect-lease-duration={{ .Values.leaderElection.leaseDuration }}
- --leader-elect-renew-deadline={{ .Values.leaderElection.renewDeadline }}
- --leader-elect-retry-period={{ .Values.leaderElection.retryPeriod }}
- --leader-elect-resource-namespace={{ .Values.leaderElection.namespace | default .Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod-level settings every component's Deployment shares. */}}
{{- define "clusternet.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- tpl (toYaml .) $ | nindent 2 }}
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget when more than one replica runs (one replica cannot tolerate one). */}}
{{- define "clusternet.pdb" -}}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "clusternet.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "clusternet.labels" . | nindent 4 }}
spec:
  {{- if hasKey .Values.podDisruptionBudget "minAvailable" }}
  minAvailable: {{ .Values.podDisruptionBudget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "clusternet.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* The ServiceAccount of the component. */}}
{{- define "clusternet.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "clusternet.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "clusternet.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: true
{{- end }}
{{- end }}

{{/* Service for metrics (and health) on the component's secure port. */}}
{{- define "clusternet.metricsService" -}}
{{- if .Values.metrics.service.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "clusternet.fullname" . }}-metrics
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "clusternet.labels" . | nindent 4 }}
  {{- with .Values.metrics.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  selector:
    {{- include "clusternet.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .Values.metrics.service.port }}
      targetPort: metrics
      protocol: TCP
{{- end }}
{{- end }}

{{/* Optional prometheus-operator ServiceMonitor of the metrics Service. */}}
{{- define "clusternet.serviceMonitor" -}}
{{- if and .Values.metrics.service.enabled .Values.metrics.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "clusternet.fullname" . }}
  namespace: {{ .Values.metrics.serviceMonitor.namespace | default .Release.Namespace }}
  labels:
    {{- include "clusternet.labels" . | nindent 4 }}
    {{- with .Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  namespaceSelector:
    matchNames:
      - {{ .Release.Namespace }}
  selector:
    matchLabels:
      {{- include "clusternet.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ .Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.metrics.serviceMonitor.scrapeTimeout }}
      {{- with .Values.metrics.serviceMonitor.endpoint }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
{{- end }}
{{- end }}

{{/* Probes on the component's health endpoints (/livez for liveness: /healthz is the
     readiness aggregate, which must not restart a pod that is merely not ready). */}}
{{- define "clusternet.probes" -}}
{{- $scheme := .scheme | default "HTTP" }}
livenessProbe:
  httpGet:
    path: /livez
    port: {{ .port }}
    scheme: {{ $scheme }}
  {{- toYaml .values.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
    scheme: {{ $scheme }}
  {{- toYaml .values.readinessProbe | nindent 2 }}
{{- end }}
