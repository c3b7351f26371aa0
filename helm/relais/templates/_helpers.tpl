{{/* Chart name. */}}
{{- define "relais.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters. */}}
{{- define "relais.fullname" -}}
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

{{- define "relais.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relais.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relais.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "relais.labels" -}}
helm.sh/chart: {{ include "relais.chart" . }}
{{ include "relais.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: relais
{{- end }}

{{- define "relais.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "relais.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "relais.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the Secret holding the three secrets (existing or chart-made). */}}
{{- define "relais.secretName" -}}
{{- default (include "relais.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Host of the Ingress: ingress.host, else the host of config.issuer. */}}
{{- define "relais.host" -}}
{{- default (urlParse .Values.config.issuer).hostname .Values.ingress.host }}
{{- end }}

{{/*
relais.toml from .Values.config: top-level scalars first, then one [table] per map. Values are
written with toJson, whose strings, numbers, booleans and arrays are valid TOML. Null values are
left out, so Relais' own default applies. `listen` comes from containerPort.
*/}}
{{- define "relais.toml" -}}
# Rendered by the Relais Helm chart from .Values.config. Keys: docs/configuration.md.
# Secrets come from the environment (RELAIS_KEYS__ENCRYPTION_KEY, RELAIS_DATABASE__URL,
# RELAIS_SESSIONS__REDIS_URL), never from this file.
listen = {{ printf "0.0.0.0:%d" (int .Values.containerPort) | quote }}
{{- $config := .Values.config }}
{{- range $key := keys $config | sortAlpha }}
{{- $value := get $config $key }}
{{- if and (not (kindIs "map" $value)) (not (kindIs "invalid" $value)) }}
{{ $key }} = {{ include "relais.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $table := keys $config | sortAlpha }}
{{- $entries := get $config $table }}
{{- if kindIs "map" $entries }}

[{{ $table }}]
{{- range $key := keys $entries | sortAlpha }}
{{- $value := get $entries $key }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ include "relais.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if include "relais.metricsOn" . }}

[metrics]
listen = {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}
{{- end }}
{{- with .Values.extraConfig }}

# extraConfig
{{ . }}
{{- end }}
{{- end }}

{{/* Non-empty when the metrics listener is on (metrics.enabled or the ServiceMonitor). */}}
{{- define "relais.metricsOn" -}}
{{- if or .Values.metrics.enabled .Values.serviceMonitor.enabled }}on{{ end -}}
{{- end }}

{{/* One TOML value. YAML numbers arrive as float64: whole numbers are written as integers. */}}
{{- define "relais.tomlValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end }}

{{/* Guards against settings that cannot work. */}}
{{- define "relais.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (eq .Values.config.sessions.backend "memory") }}
{{- fail "config.sessions.backend \"memory\" keeps sessions inside one pod: with replicaCount > 1 use \"redis\"" }}
{{- end }}
{{- if and (not .Values.secrets.existingSecret) (gt (int .Values.replicaCount) 1) (hasPrefix "sqlite" .Values.secrets.databaseUrl) }}
{{- fail "SQLite is for a single node: with replicaCount > 1 set secrets.databaseUrl to PostgreSQL" }}
{{- end }}
{{- if not (hasPrefix "https://" .Values.config.issuer) }}
{{- fail "config.issuer must be an https URL" }}
{{- end }}
{{- if and .Values.cards.enabled (not (regexMatch (printf "(?m)^\\s*listen\\s*=\\s*\"0\\.0\\.0\\.0:%d\"" (int .Values.cards.port)) .Values.extraConfig)) }}
{{- fail (printf "cards.enabled: extraConfig needs a [cards] table with listen = \"0.0.0.0:%d\" (cards.port)" (int .Values.cards.port)) }}
{{- end }}
{{- end }}

{{/* The env entries carrying the secrets. */}}
{{- define "relais.secretEnv" -}}
- name: RELAIS_KEYS__ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "relais.secretName" . }}
      key: {{ .Values.secrets.keys.encryptionKey }}
- name: RELAIS_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "relais.secretName" . }}
      key: {{ .Values.secrets.keys.databaseUrl }}
- name: RELAIS_SESSIONS__REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "relais.secretName" . }}
      key: {{ .Values.secrets.keys.redisUrl }}
{{- end }}
