{{/* Names, labels and the exporter container, shared by the templates. */}}

{{- define "gie.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gie.fullname" -}}
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

{{- define "gie.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gie.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gie.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gie.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpu-inference-exporter
{{- end }}

{{- define "gie.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gie.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; tag defaults to the chart's appVersion. */}}
{{- define "gie.imageRef" -}}
{{- $image := index . 0 }}{{- $chart := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The port name of the exporter: its own in sidecar mode, where the pod has other ports. */}}
{{- define "gie.portName" -}}
{{- if eq .Values.mode "sidecar" }}{{ .Values.sidecar.portName }}{{ else }}metrics{{ end }}
{{- end }}

{{/* The exporter's job, which the alert rules name (the exporter-down alert). */}}
{{- define "gie.jobRelabeling" -}}
- targetLabel: job
  replacement: {{ .Values.monitor.job | quote }}
  action: replace
{{- end }}

{{/* Relabelings every monitor applies: node from the pod's node, cluster from the value. */}}
{{- define "gie.relabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
  action: replace
{{- if and .Values.monitor.instanceFromNode (eq .Values.mode "daemonset") }}
- sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: instance
  action: replace
{{- end }}
{{- if .Values.cluster }}
- targetLabel: cluster
  replacement: {{ .Values.cluster | quote }}
  action: replace
{{- end }}
{{- with .Values.monitor.relabelings }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The exporter container: the DaemonSet's, and the one sidecar mode asks you to add. */}}
{{- define "gie.container" -}}
{{- $v := .Values }}
{{- $sidecar := eq $v.mode "sidecar" }}
{{- $canary := and $v.canary.enabled (not $sidecar) }}
{{- $profiling := and $v.dcgm.embedded $v.dcgm.embeddedProfiling -}}
name: gpu-inference-exporter
image: {{ include "gie.imageRef" (list (ternary $v.canary.image $v.image $canary) .Chart) | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
args:
  - serve
  - --backend={{ ternary $v.sidecar.backend $v.backend $sidecar }}
  - --web.listen-address=:{{ $v.port }}
  - --collect.interval={{ $v.collectInterval }}
  - --collect.processes={{ $v.collectProcesses }}
  - --dcgm.address={{ $v.dcgm.address }}
  - --dcgm.embedded={{ $v.dcgm.embedded }}
  - --log.format={{ $v.logFormat }}
  - --log.level={{ $v.logLevel }}
{{- if $canary }}
  - --harness
  - --harness.device={{ $v.canary.device }}
  - --harness.preset={{ $v.canary.preset }}
  - --harness.kv-cache-memory={{ $v.canary.kvCacheMemory }}
  - --harness.load={{ $v.canary.load }}
  - --harness.request-timeout={{ $v.canary.requestTimeout }}
{{- else }}
  - --no-harness
{{- end }}
{{- if and $sidecar $v.sidecar.torchProbe.enabled }}
  - --torch.probe-dir={{ $v.sidecar.torchProbe.mountPath }}
{{- range $v.sidecar.torchProbe.uids }}
  - --torch.probe-uid={{ . }}
{{- end }}
{{- end }}
{{- range $v.extraArgs }}
  - {{ . | quote }}
{{- end }}
env:
  # Downward API: the node, namespace and pod labels of every series.
  - name: NODE_NAME
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: NODE_IP
    valueFrom:
      fieldRef:
        fieldPath: status.hostIP
  # The NVIDIA container runtime mounts NVML for these.
  - name: NVIDIA_VISIBLE_DEVICES
    value: {{ $v.nvidia.visibleDevices | quote }}
  - name: NVIDIA_DRIVER_CAPABILITIES
    value: {{ ternary (printf "compute,%s" $v.nvidia.driverCapabilities) $v.nvidia.driverCapabilities $canary | quote }}
{{- if $v.dcgm.bindingsPath }}
  - name: DCGM_BINDINGS_PATH
    value: {{ $v.dcgm.bindingsPath | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . | indent 2 }}
{{- end }}
ports:
  - name: {{ include "gie.portName" . }}
    containerPort: {{ $v.port }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ include "gie.portName" . }}
{{ toYaml $v.livenessProbe | indent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ include "gie.portName" . }}
{{ toYaml $v.readinessProbe | indent 2 }}
resources:
{{ toYaml (ternary $v.canary.resources $v.resources $canary) | indent 2 }}
securityContext:
{{- if $profiling }}
{{- $caps := dict "drop" (list "ALL") "add" (list "SYS_ADMIN") }}
{{ toYaml (merge (dict "runAsNonRoot" false "runAsUser" 0 "capabilities" $caps) (deepCopy $v.securityContext)) | indent 2 }}
{{- else if $sidecar }}
{{- /* In someone else's pod: carry the pod-level settings on the container itself. */}}
{{- $own := pick $v.podSecurityContext "runAsNonRoot" "runAsUser" "runAsGroup" "seccompProfile" }}
{{ toYaml (merge (deepCopy $v.securityContext) $own) | indent 2 }}
{{- else }}
{{ toYaml $v.securityContext | indent 2 }}
{{- end }}
volumeMounts:
  - name: gie-tmp
    mountPath: /tmp
{{- if and $sidecar $v.sidecar.torchProbe.enabled }}
  - name: gie-torch-probe
    mountPath: {{ $v.sidecar.torchProbe.mountPath }}
{{- end }}
{{- with $v.extraVolumeMounts }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end }}

{{/* The pod's volumes the exporter container needs. */}}
{{- define "gie.volumes" -}}
- name: gie-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and (eq .Values.mode "sidecar") .Values.sidecar.torchProbe.enabled }}
# The allocator probes' files: a few hundred bytes per serving process, in memory.
- name: gie-torch-probe
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* What the inference container adds (sidecar mode): the probe's directory, mounted and named. */}}
{{- define "gie.engine" -}}
{{- $probe := .Values.sidecar.torchProbe -}}
{{- if $probe.enabled -}}
env:
  # The vLLM plugin of gpu-inference-exporter (pip install it in the image) starts the allocator
  # probe in every vLLM process; any other PyTorch server calls exporter.probe.start_from_env().
  - name: GIE_TORCH_PROBE_DIR
    value: {{ $probe.mountPath | quote }}
volumeMounts:
  - name: gie-torch-probe
    mountPath: {{ $probe.mountPath }}
{{- else -}}
{}
{{- end }}
{{- end }}
