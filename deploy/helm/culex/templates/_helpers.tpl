{{/* Names and labels. */}}
{{- define "culex.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "culex.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "culex.selectorLabels" -}}
app.kubernetes.io/name: {{ include "culex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "culex.labels" -}}
{{ include "culex.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The headless Service of the cores: their stable DNS names, the peers. */}}
{{- define "culex.coreHeadless" -}}
{{- printf "%s-core-headless" (include "culex.fullname" .) -}}
{{- end -}}

{{- define "culex.secretName" -}}
{{- include "culex.fullname" . -}}
{{- end -}}

{{- define "culex.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "culex.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "culex.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "culex.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The embedded cluster port is on unless an external NATS is used. */}}
{{- define "culex.clusterPort" -}}
{{- if not .Values.cluster.natsUrl -}}true{{- end -}}
{{- end -}}

{{/*
The pod of one role: culex.pod with (dict "root" $ "role" "core"|"replicant").
Both roles run the same config (the ConfigMap); the role, the node name and
the secrets come from the environment.
*/}}
{{- define "culex.pod" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $role := .role -}}
{{- $r := index $v $role -}}
metadata:
  labels:
    {{- include "culex.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
    {{- if or (eq $role "replicant") $v.core.serveClients }}
    culex.io/serves-clients: "true"
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- /* Restart the pods when the chart's Secret changes (the cluster
    secret, the admin password): env from a Secret is read at start only. */}}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "culex.serviceAccountName" $root }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  containers:
    - name: culex
      image: "{{ $v.image.repository }}:{{ default $root.Chart.AppVersion $v.image.tag }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["serve", "-c", "/etc/culex/culex.yaml"]
      env:
        - name: CULEX_CLUSTER_ROLE
          value: {{ $role }}
        - name: CULEX_CLUSTER_NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if include "culex.clusterPort" $root }}
        - name: CULEX_CLUSTER_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ default (include "culex.secretName" $root) $v.cluster.existingSecret }}
              key: cluster-secret
        {{- end }}
        {{- if or $v.admin.password $v.admin.existingSecret }}
        - name: CULEX_ADMIN_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ default (include "culex.secretName" $root) $v.admin.existingSecret }}
              key: admin-password
        {{- end }}
        {{- if $v.kafka.sasl.passwordSecret.name }}
        - name: CULEX_KAFKA_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ $v.kafka.sasl.passwordSecret.name }}
              key: {{ $v.kafka.sasl.passwordSecret.key }}
        {{- end }}
      ports:
        - {name: mqtt, containerPort: 1883, protocol: TCP}
        - {name: ws, containerPort: 8083, protocol: TCP}
        {{- if $v.tls.enabled }}
        - {name: mqtts, containerPort: 8883, protocol: TCP}
        - {name: wss, containerPort: 8084, protocol: TCP}
        {{- end }}
        - {name: admin, containerPort: {{ $v.admin.port }}, protocol: TCP}
        {{- if include "culex.clusterPort" $root }}
        - {name: cluster, containerPort: {{ $v.cluster.port }}, protocol: TCP}
        - {name: link, containerPort: {{ $v.cluster.linkPort }}, protocol: TCP}
        {{- end }}
      # Ready: listeners accepting, store open, cluster joined; scope=node
      # leaves out Kafka and the cluster's JetStream, shared by every pod
      # (values.yaml, probes). Alive: the process answers.
      readinessProbe:
        httpGet: {path: "/readyz?scope=node", port: admin}
        {{- toYaml $v.probes.readiness | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: admin}
        {{- toYaml $v.probes.liveness | nindent 8 }}
      startupProbe:
        httpGet: {path: /healthz, port: admin}
        {{- toYaml $v.probes.startup | nindent 8 }}
      lifecycle:
        # Out of the Service first, then SIGTERM: culex closes its
        # listeners and disconnects its devices within shutdown_timeout,
        # and they reconnect through the LoadBalancer to other nodes.
        preStop:
          sleep:
            seconds: {{ $v.preStopSeconds }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      {{- with $r.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - {name: config, mountPath: /etc/culex/culex.yaml, subPath: culex.yaml, readOnly: true}
        - {name: data, mountPath: /var/lib/culex}
        {{- if $v.tls.enabled }}
        - {name: tls, mountPath: /etc/culex/tls, readOnly: true}
        {{- end }}
        {{- if $v.cluster.tls.enabled }}
        - {name: cluster-tls, mountPath: /etc/culex/cluster-tls, readOnly: true}
        {{- end }}
        {{- if $v.kafka.tls.caSecret.name }}
        - {name: kafka-ca, mountPath: /etc/culex/kafka-ca, readOnly: true}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "culex.fullname" $root }}
    {{- if not (and (eq $role "core") $v.core.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- if $v.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "culex.tlsSecretName" $root }}
    {{- end }}
    {{- if $v.cluster.tls.enabled }}
    - name: cluster-tls
      secret:
        secretName: {{ required "cluster.tls.existingSecret is required with cluster.tls.enabled" $v.cluster.tls.existingSecret }}
    {{- end }}
    {{- if $v.kafka.tls.caSecret.name }}
    - name: kafka-ca
      secret:
        secretName: {{ $v.kafka.tls.caSecret.name }}
        items:
          - {key: {{ $v.kafka.tls.caSecret.key }}, path: ca.crt}
    {{- end }}
  {{- with $r.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $r.affinity }}
  affinity:
    {{- toYaml $r.affinity | nindent 4 }}
  {{- else }}
  # Spread each role's pods over nodes: losing one Kubernetes node loses
  # few connections and never a majority of the cores.
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "culex.selectorLabels" $root | nindent 10 }}
          app.kubernetes.io/component: {{ $role }}
  {{- end }}
{{- end -}}
