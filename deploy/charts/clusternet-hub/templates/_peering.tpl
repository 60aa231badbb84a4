{{/* Whether replicas peer: peering.enabled, or "auto" = more than one replica. */}}
{{- define "clusternet-hub.peering" -}}
{{- if eq (toString .Values.peering.enabled) "auto" -}}
{{- gt (int .Values.replicaCount) 1 -}}
{{- else -}}
{{- eq (toString .Values.peering.enabled) "true" -}}
{{- end -}}
{{- end }}

{{/* The CA peers' serving certificates are verified with: a Secret or ConfigMap key. */}}
{{- define "clusternet-hub.peerCAVolume" -}}
{{- $fullname := include "clusternet.fullname" . -}}
{{- if eq .Values.tls.mode "secret" -}}
configMap:
  name: {{ $fullname }}-peer-ca
  items:
    - key: ca.crt
      path: ca.crt
{{- else -}}
secret:
  secretName: {{ $fullname }}-serving-cert
  items:
    - key: ca.crt
      path: ca.crt
{{- end -}}
{{- end }}
