{{/* IngressRoute tls block (spec.tls). */}}
{{- define "wallet-stack.ingressRouteTLS" -}}
{{- $t := .Values.ingress.tls }}
{{- if $t.enabled }}
tls:
  {{- if $t.certResolver }}
  certResolver: {{ $t.certResolver }}
  {{- else if or $t.secretName (include "wallet-stack.tlsSelfSigned" .) }}
  secretName: {{ include "wallet-stack.tlsSecretName" . }}
  {{- end }}
  {{- if .Values.ingress.edge.tlsOptions.enabled }}
  options:
    name: {{ include "wallet-stack.tlsOptionName" . }}
  {{- end }}
  {{- if not (or $t.certResolver $t.secretName (include "wallet-stack.tlsSelfSigned" .) .Values.ingress.edge.tlsOptions.enabled) }}
  {}
  {{- end }}
{{- end }}
{{- end }}

{{/* Traefik annotations of a plain Ingress. Usage: include "wallet-stack.ingressAnnotations" (dict "ctx" . "kind" "wallet"|"auth") */}}
{{- define "wallet-stack.ingressAnnotations" -}}
{{- $v := .ctx.Values.ingress }}
traefik.ingress.kubernetes.io/router.entrypoints: {{ join "," $v.entryPoints | quote }}
{{- if $v.tls.enabled }}
traefik.ingress.kubernetes.io/router.tls: "true"
{{- with $v.tls.certResolver }}
traefik.ingress.kubernetes.io/router.tls.certresolver: {{ . | quote }}
{{- end }}
{{- if and $v.edge.tlsOptions.enabled $v.traefikCRDs }}
traefik.ingress.kubernetes.io/router.tls.options: {{ printf "%s-%s@kubernetescrd" .ctx.Release.Namespace (include "wallet-stack.tlsOptionName" .ctx) | quote }}
{{- end }}
{{- end }}
{{- if $v.traefikCRDs }}
traefik.ingress.kubernetes.io/router.middlewares: {{ include "wallet-stack.ingressMiddlewareRefs" (list .ctx .kind) | quote }}
{{- end }}
{{- with $v.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Ingress spec.tls entry for the given hosts. Usage: include "wallet-stack.ingressTLS" (dict "ctx" . "hosts" (list ...)) */}}
{{- define "wallet-stack.ingressTLS" -}}
{{- $t := .ctx.Values.ingress.tls }}
{{- if and $t.enabled (or $t.secretName (include "wallet-stack.tlsSelfSigned" .ctx)) }}
tls:
  - hosts:
      {{- toYaml .hosts | nindent 6 }}
    secretName: {{ include "wallet-stack.tlsSecretName" .ctx }}
{{- end }}
{{- end }}
