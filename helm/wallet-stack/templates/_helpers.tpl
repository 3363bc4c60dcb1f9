{{/*
Naming. fullname = <release>-<chart> unless the release name already contains
the chart name (release "wallet-stack" -> "wallet-stack"). Component objects
are "<fullname>-<component>" where the component is the compose service name
(wallet-api, redis, whoami) so the two stacks are easy to compare.
*/}}
{{- define "wallet-stack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wallet-stack.fullname" -}}
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

{{- define "wallet-stack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<fullname>-<suffix>" truncated to 63 chars. Usage: include "wallet-stack.componentName" (list . "wallet-api") */}}
{{- define "wallet-stack.componentName" -}}
{{- $ctx := index . 0 }}
{{- printf "%s-%s" (include "wallet-stack.fullname" $ctx | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" }}
{{- end }}

{{- define "wallet-stack.apiName" -}}
{{- include "wallet-stack.componentName" (list . "wallet-api") }}
{{- end }}

{{- define "wallet-stack.redisName" -}}
{{- include "wallet-stack.componentName" (list . "redis") }}
{{- end }}

{{- define "wallet-stack.sentinelName" -}}
{{- include "wallet-stack.componentName" (list . "sentinel") }}
{{- end }}

{{- define "wallet-stack.redisScriptsName" -}}
{{- include "wallet-stack.componentName" (list . "redis-scripts") }}
{{- end }}

{{/* true when the built-in Redis runs with replicas and Sentinels */}}
{{- define "wallet-stack.sentinelEnabled" -}}
{{- if and .Values.redis.enabled .Values.redis.sentinel.enabled }}true{{ end }}
{{- end }}

{{/*
Host names of the HA topology: each pod by its stable name under the headless
Service (Redis nodes and Sentinels announce these, not pod IPs, which change).
*/}}
{{- define "wallet-stack.redisPodHost" -}}
{{- $ctx := index . 0 }}
{{- printf "%s-%d.%s.%s.svc" (include "wallet-stack.redisName" $ctx) (int (index . 1)) (include "wallet-stack.redisName" $ctx) $ctx.Release.Namespace }}
{{- end }}

{{- define "wallet-stack.sentinelHosts" -}}
{{- $hosts := list }}
{{- $name := include "wallet-stack.sentinelName" . }}
{{- range $i := until (int .Values.redis.sentinel.sentinels) }}
{{- $hosts = append $hosts (printf "%s-%d.%s.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.redis.sentinel.port)) }}
{{- end }}
{{- join "," $hosts }}
{{- end }}

{{- define "wallet-stack.retryMiddlewareName" -}}
{{- include "wallet-stack.componentName" (list . "retry") }}
{{- end }}

{{- define "wallet-stack.retryKeyedMiddlewareName" -}}
{{- include "wallet-stack.componentName" (list . "retry-keyed") }}
{{- end }}

{{- define "wallet-stack.whoamiName" -}}
{{- include "wallet-stack.componentName" (list . "whoami") }}
{{- end }}

{{/* Common labels (no component). */}}
{{- define "wallet-stack.labels" -}}
helm.sh/chart: {{ include "wallet-stack.chart" . }}
app.kubernetes.io/name: {{ include "wallet-stack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wallet-stack
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels for a component. Usage: include "wallet-stack.selectorLabels" (list . "wallet-api") */}}
{{- define "wallet-stack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wallet-stack.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Full labels for a component. */}}
{{- define "wallet-stack.componentLabels" -}}
{{ include "wallet-stack.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Image reference. Usage: include "wallet-stack.image" (dict "image" .Values.image "default" .Chart.AppVersion) */}}
{{- define "wallet-stack.image" -}}
{{- $tag := .image.tag | default .default | toString }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{- define "wallet-stack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wallet-stack.apiName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- secrets */}}

{{- define "wallet-stack.apiKeysSecretName" -}}
{{- .Values.wallet.apiKeys.existingSecret | default (include "wallet-stack.componentName" (list . "api-keys")) }}
{{- end }}

{{/* Key of the development tokens (comma-separated) in the chart's API-keys Secret (NOTES, helm test). */}}
{{- define "wallet-stack.apiKeysSecretKey" -}}
api-keys
{{- end }}

{{/* Key of the key definitions file (WALLET_API_KEYS_FILE) in the API-keys Secret. */}}
{{- define "wallet-stack.apiKeysFileKey" -}}
{{- if .Values.wallet.apiKeys.existingSecret }}{{ .Values.wallet.apiKeys.existingSecretKey }}{{ else }}api-keys.yaml{{ end }}
{{- end }}

{{/* Where the pods read the key definitions (compose mounts its secret at the same path). */}}
{{- define "wallet-stack.apiKeysFilePath" -}}
/etc/wallet-api/keys/api-keys.yaml
{{- end }}

{{/*
The key definitions file of the chart's Secret: wallet.apiKeys.definitions, then
one definition per development token (tenant default, every scope, the id
wallet-api derives: key_ + the first 16 hex digits of the token's SHA-256).
JSON, which wallet-api reads like YAML. Usage: include "wallet-stack.apiKeysFile" (dict "definitions" LIST "tokens" LIST)
*/}}
{{- define "wallet-stack.apiKeysFile" -}}
{{- $keys := list }}
{{- range .definitions }}{{ $keys = append $keys . }}{{ end }}
{{- range .tokens }}
{{- $digest := sha256sum . }}
{{- $keys = append $keys (dict "id" (printf "key_%s" (substr 0 16 $digest)) "tenant" "default" "scopes" (list "wallets:read" "wallets:create" "money:move") "digest" (printf "sha256:%s" $digest) "description" "development key: wallet.apiKeys.keys") }}
{{- end }}
{{- dict "keys" $keys | toJson }}
{{- end }}

{{- define "wallet-stack.redisSecretName" -}}
{{- .Values.redis.auth.existingSecret | default (include "wallet-stack.componentName" (list . "redis-auth")) }}
{{- end }}

{{- define "wallet-stack.redisSecretKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretKey }}{{ else }}redis-password{{ end }}
{{- end }}

{{- define "wallet-stack.externalRedisSecretName" -}}
{{- .Values.externalRedis.existingSecret | default (include "wallet-stack.componentName" (list . "external-redis")) }}
{{- end }}

{{- define "wallet-stack.externalRedisSecretKey" -}}
{{- if .Values.externalRedis.existingSecret }}{{ .Values.externalRedis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}

{{- define "wallet-stack.basicAuthSecretName" -}}
{{- .Values.basicAuth.existingSecret | default (include "wallet-stack.componentName" (list . "basic-auth")) }}
{{- end }}

{{- define "wallet-stack.basicAuthMiddlewareName" -}}
{{- include "wallet-stack.componentName" (list . "basic-auth") }}
{{- end }}

{{- define "wallet-stack.tlsSecretName" -}}
{{- .Values.ingress.tls.secretName | default (include "wallet-stack.componentName" (list . "tls")) }}
{{- end }}

{{/*
Value of one key of a chart-managed Secret, base64-encoded:
the user-supplied value if any, else the value already stored in the cluster
(lookup; keeps generated values stable across upgrades), else a random one.
Usage: include "wallet-stack.secretValue" (dict "ctx" . "secret" NAME "key" KEY "value" USERVALUE "length" N)
*/}}
{{- define "wallet-stack.secretValue" -}}
{{- $existing := (lookup "v1" "Secret" .ctx.Release.Namespace .secret) | default dict }}
{{- $data := (get $existing "data") | default dict }}
{{- if .value }}
{{- .value | toString | b64enc }}
{{- else if (get $data .key) }}
{{- get $data .key }}
{{- else }}
{{- randAlphaNum (int .length) | b64enc }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------- routing */}}

{{/* true when the chart may render and reference traefik.io objects (always in IngressRoute mode) */}}
{{- define "wallet-stack.traefikCRDs" -}}
{{- if and .Values.ingress.enabled (or (eq .Values.ingress.mode "ingressroute") .Values.ingress.traefikCRDs) }}true{{ end }}
{{- end }}

{{/* true when some route protected by basic auth is rendered */}}
{{- define "wallet-stack.basicAuthNeeded" -}}
{{- $r := .Values.ingress.routes }}
{{- if and .Values.ingress.enabled (or $r.dashboard.enabled $r.prometheus.enabled $r.alertmanager.enabled .Values.whoami.enabled) }}true{{ end }}
{{- end }}

{{/* true when the chart generates the self-signed TLS Secret */}}
{{- define "wallet-stack.tlsSelfSigned" -}}
{{- $t := .Values.ingress.tls }}
{{- if and .Values.ingress.enabled $t.enabled (not $t.secretName) (not $t.certResolver) $t.selfSigned }}true{{ end }}
{{- end }}

{{/* Hosts served by this release (used for the self-signed certificate). */}}
{{- define "wallet-stack.hosts" -}}
{{- $h := list .Values.ingress.hosts.wallet }}
{{- if .Values.ingress.routes.dashboard.enabled }}{{ $h = append $h .Values.ingress.hosts.dashboard }}{{ end }}
{{- if .Values.ingress.routes.prometheus.enabled }}{{ $h = append $h .Values.ingress.hosts.prometheus }}{{ end }}
{{- if .Values.ingress.routes.alertmanager.enabled }}{{ $h = append $h .Values.ingress.hosts.alertmanager }}{{ end }}
{{- if .Values.whoami.enabled }}{{ $h = append $h .Values.ingress.hosts.whoami }}{{ end }}
{{- toJson $h }}
{{- end }}

{{/* Middleware reference usable in Ingress annotations: <namespace>-<name>@kubernetescrd */}}
{{- define "wallet-stack.basicAuthMiddlewareRef" -}}
{{- printf "%s-%s@kubernetescrd" .Release.Namespace (include "wallet-stack.basicAuthMiddlewareName" .) }}
{{- end }}

{{/*
true when the chart renders the wallet-api ServersTransport (upstream idle timeout):
always in IngressRoute mode, in Ingress mode only with ingress.wallet.serversTransportCRD.
*/}}
{{- define "wallet-stack.serversTransportEnabled" -}}
{{- $ing := .Values.ingress }}
{{- if and $ing.enabled (or (eq $ing.mode "ingressroute") $ing.wallet.serversTransportCRD) }}true{{ end }}
{{- end }}

{{- define "wallet-stack.serversTransportName" -}}
{{- include "wallet-stack.apiName" . }}
{{- end }}

{{/* ServersTransport reference usable in Service annotations: <namespace>-<name>@kubernetescrd */}}
{{- define "wallet-stack.serversTransportRef" -}}
{{- printf "%s-%s@kubernetescrd" .Release.Namespace (include "wallet-stack.serversTransportName" .) }}
{{- end }}

{{/* ------------------------------------------------------------- checks */}}
{{- define "wallet-stack.validate" -}}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled=true and externalRedis.* are mutually exclusive: set redis.enabled=false to use an external Redis" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.url) (not .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled=false requires externalRedis.url or externalRedis.existingSecret" }}
{{- end }}
{{- if and .Values.externalRedis.url .Values.externalRedis.existingSecret }}
{{- fail "set only one of externalRedis.url and externalRedis.existingSecret" }}
{{- end }}
{{- if and .Values.ingress.enabled (eq .Values.ingress.mode "ingress") .Values.ingress.routes.dashboard.enabled }}
{{- fail "ingress.routes.dashboard needs ingress.mode=ingressroute: a plain Ingress cannot target the api@internal TraefikService" }}
{{- end }}
{{- if and .Values.ingress.enabled (eq .Values.ingress.mode "ingress") .Values.ingress.routes.prometheus.enabled .Values.ingress.routes.prometheus.service.namespace }}
{{- fail "ingress.routes.prometheus.service.namespace needs ingress.mode=ingressroute: an Ingress backend must live in the release namespace" }}
{{- end }}
{{- if and .Values.ingress.tls.secretName .Values.ingress.tls.certResolver }}
{{- fail "set only one of ingress.tls.secretName and ingress.tls.certResolver" }}
{{- end }}
{{- if and .Values.basicAuth.existingSecret (or .Values.basicAuth.users .Values.basicAuth.password) }}
{{- fail "basicAuth.existingSecret excludes basicAuth.users/basicAuth.password" }}
{{- end }}
{{- if and .Values.wallet.apiKeys.existingSecret (or .Values.wallet.apiKeys.keys .Values.wallet.apiKeys.definitions) }}
{{- fail "wallet.apiKeys.existingSecret excludes wallet.apiKeys.keys and wallet.apiKeys.definitions" }}
{{- end }}
{{- if and .Values.redis.auth.existingSecret (or .Values.redis.auth.password .Values.redis.auth.adminPassword .Values.redis.auth.exporterPassword) }}
{{- fail "redis.auth.existingSecret excludes redis.auth.password/adminPassword/exporterPassword" }}
{{- end }}
{{- if and .Values.alertmanager.enabled (not .Values.alertmanager.webhookUrl) (not .Values.alertmanager.receivers) }}
{{- fail "alertmanager.enabled needs alertmanager.webhookUrl or alertmanager.receivers: an alert nobody receives is no alert" }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.routes.alertmanager.enabled (not .Values.ingress.routes.alertmanager.service.name) (not .Values.alertmanager.enabled) }}
{{- fail "ingress.routes.alertmanager needs alertmanager.enabled or ingress.routes.alertmanager.service.name" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.traefikCRDs) }}
{{- if eq .Values.ingress.mode "ingressroute" }}
{{- fail "ingress.traefikCRDs=false needs ingress.mode=ingress: IngressRoutes are Traefik CRDs" }}
{{- end }}
{{- if include "wallet-stack.basicAuthNeeded" . }}
{{- fail "ingress.traefikCRDs=false: the basic-auth routes (dashboard, prometheus, alertmanager, whoami) need the Middleware CRD; turn them off" }}
{{- end }}
{{- if .Values.ingress.wallet.serversTransportCRD }}
{{- fail "ingress.wallet.serversTransportCRD needs the Traefik CRDs (ingress.traefikCRDs=true)" }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (eq .Values.ingress.mode "ingress") .Values.ingress.routes.alertmanager.enabled }}
{{- fail "ingress.routes.alertmanager needs ingress.mode=ingressroute" }}
{{- end }}
{{- if and .Values.backup.enabled (not .Values.redis.enabled) }}
{{- fail "backup.enabled snapshots the chart's Redis (redis.enabled=true); back up an external Redis where it runs" }}
{{- end }}
{{- if and .Values.redis.sentinel.enabled (not .Values.redis.enabled) }}
{{- fail "redis.sentinel.enabled needs the built-in Redis (redis.enabled=true); for an external Sentinel set REDIS_SENTINELS and REDIS_MASTER_NAME in wallet.env" }}
{{- end }}
{{- if include "wallet-stack.sentinelEnabled" . }}
{{- range $k := list "REDIS_SENTINELS" "REDIS_MASTER_NAME" "REDIS_MIN_REPLICAS_ACK" }}
{{- if ne (toString (get $.Values.wallet.env $k | default "")) "" }}
{{- fail (printf "redis.sentinel.enabled sets %s: remove it from wallet.env (redis.sentinel.* configures it)" $k) }}
{{- end }}
{{- end }}
{{- if gt (int .Values.redis.sentinel.quorum) (int .Values.redis.sentinel.sentinels) }}
{{- fail "redis.sentinel.quorum cannot exceed redis.sentinel.sentinels" }}
{{- end }}
{{- if gt (int .Values.redis.sentinel.minReplicasAck) (int .Values.redis.sentinel.replicas) }}
{{- fail "redis.sentinel.minReplicasAck cannot exceed redis.sentinel.replicas: no commit could ever be acknowledged" }}
{{- end }}
{{- if gt (int .Values.redis.sentinel.minReplicasToWrite) (int .Values.redis.sentinel.replicas) }}
{{- fail "redis.sentinel.minReplicasToWrite cannot exceed redis.sentinel.replicas: the primary would refuse every write" }}
{{- end }}
{{- end }}
{{- end }}

{{/* One NetworkPolicyPeer from {namespaceSelector, podSelector} (either may be null). */}}
{{- define "wallet-stack.npPeer" -}}
{{- $peer := dict }}
{{- if .namespaceSelector }}{{ $_ := set $peer "namespaceSelector" .namespaceSelector }}{{ end }}
{{- if .podSelector }}{{ $_ := set $peer "podSelector" .podSelector }}{{ end }}
{{- if not $peer }}{{ fail "networkPolicy peer needs a namespaceSelector and/or podSelector" }}{{ end }}
- {{ toYaml $peer | nindent 2 | trim }}
{{- end }}

{{/*
Edge middlewares of a route, in the order Traefik runs them (compose: the websecure
entrypoint's security-headers first, then the router's own). kind: "wallet" (the API:
rate limit, in-flight cap) or "auth" (basic-auth routes: stricter rate limit, then the
password check). Usage: include "wallet-stack.edgeMiddlewareNames" (list . "wallet")
-> one name per line.
*/}}
{{- define "wallet-stack.edgeMiddlewareNames" -}}
{{- $ctx := index . 0 }}
{{- $kind := index . 1 }}
{{- $edge := $ctx.Values.ingress.edge }}
{{- if $edge.securityHeaders }}
{{ include "wallet-stack.componentName" (list $ctx "security-headers") }}
{{- end }}
{{- if eq $kind "wallet" }}
{{ include "wallet-stack.componentName" (list $ctx "wallet-rate-limit") }}
{{ include "wallet-stack.componentName" (list $ctx "wallet-in-flight") }}
{{- else }}
{{ include "wallet-stack.componentName" (list $ctx "auth-rate-limit") }}
{{ include "wallet-stack.basicAuthMiddlewareName" $ctx }}
{{- end }}
{{- end }}

{{/* IngressRoute `middlewares:` entries of a route kind (see edgeMiddlewareNames). */}}
{{- define "wallet-stack.ingressRouteMiddlewares" -}}
{{- range splitList "\n" (include "wallet-stack.edgeMiddlewareNames" . | trim) }}
- name: {{ . }}
{{- end }}
{{- end }}

{{/* Ingress-mode annotation value: the same middlewares as <ns>-<name>@kubernetescrd. */}}
{{- define "wallet-stack.ingressMiddlewareRefs" -}}
{{- $ctx := index . 0 }}
{{- $refs := list }}
{{- range splitList "\n" (include "wallet-stack.edgeMiddlewareNames" . | trim) }}
{{- $refs = append $refs (printf "%s-%s@kubernetescrd" $ctx.Release.Namespace .) }}
{{- end }}
{{- join "," $refs }}
{{- end }}

{{- define "wallet-stack.tlsOptionName" -}}
{{- include "wallet-stack.componentName" (list . "tls-options") }}
{{- end }}

{{/* Key of a Redis password in the Redis Secret: which = "app" | "admin" | "exporter". */}}
{{- define "wallet-stack.redisSecretKeyOf" -}}
{{- $ctx := index . 0 }}{{- $which := index . 1 }}
{{- $a := $ctx.Values.redis.auth }}
{{- if eq $which "app" }}{{ include "wallet-stack.redisSecretKey" $ctx }}
{{- else if eq $which "admin" }}{{ if $a.existingSecret }}{{ $a.existingSecretAdminKey }}{{ else }}admin-password{{ end }}
{{- else }}{{ if $a.existingSecret }}{{ $a.existingSecretExporterKey }}{{ else }}exporter-password{{ end }}
{{- end }}
{{- end }}

{{/* redis-server arguments of one ACL user: --user NAME on >$(ENV) RULES... */}}
{{- define "wallet-stack.redisAclArgs" -}}
{{- $user := index . 0 }}{{- $env := index . 1 }}{{- $rules := index . 2 }}
- --user
- {{ $user }}
- "on"
- ">$({{ $env }})"
{{- range splitList " " $rules }}
{{- if . }}
- {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A scalar as a container sees it (env value, argument). A number from a values file
is a float64 to the template engine, and toString writes 1000000 as "1e+06", which
no integer setting of the app accepts: whole numbers are written out in full.
*/}}
{{- define "wallet-stack.scalar" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- printf "%.0f" . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end }}
