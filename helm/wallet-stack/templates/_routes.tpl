{{/* IngressRoute tls block (spec.tls). */}}
{{- define "wallet-stack.ingressRouteTLS" -}}
{{- $t := .Values.ingress.tls }}
{{- if $t.enabled }}
tls:
  {{- if $t.certResolver }}
  certResolver: {{ $t.certResolver }}
  {{- else if or $t.secretName (include "wallet-stack.tlsSelfSigned" .) }}
  secretName: {{ include "wallet-stack.tlsSecretName" . }}
  {{- else }}
  {}
  {{- end }}
{{- end }}
{{- end }}

{{/* Traefik annotations of a plain Ingress. Usage: include "wallet-stack.ingressAnnotations" (dict "ctx" . "middleware" true) */}}
{{- define "wallet-stack.ingressAnnotations" -}}
{{- $v := .ctx.Values.ingress }}
traefik.ingress.kubernetes.io/router.entrypoints: {{ join "," $v.entryPoints | quote }}
{{- if $v.tls.enabled }}
traefik.ingress.kubernetes.io/router.tls: "true"
{{- with $v.tls.certResolver }}
traefik.ingress.kubernetes.io/router.tls.certresolver: {{ . | quote }}
{{- end }}
{{- end }}
{{- if .middleware }}
traefik.ingress.kubernetes.io/router.middlewares: {{ include "wallet-stack.basicAuthMiddlewareRef" .ctx | quote }}
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
