package check

import (
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../helm/culex"
	release   = "culex"
	namespace = "mqtt"
)

// valueSets are the chart's value sets under test, by name.
func valueSets(t *testing.T) map[string]map[string]any {
	strimzi := map[string]any{}
	b, err := os.ReadFile("../strimzi/values-strimzi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &strimzi); err != nil {
		t.Fatalf("values-strimzi.yaml: %v", err)
	}
	sets := map[string]map[string]any{
		"defaults": {},
		"tls": {
			"tls":            map[string]any{"enabled": true, "cert": "-----BEGIN CERTIFICATE-----\n...\n", "key": "-----BEGIN PRIVATE KEY-----\n...\n"},
			"cluster":        map[string]any{"tls": map[string]any{"enabled": true, "existingSecret": "culex-cluster-tls"}},
			"proxyProtocol":  map[string]any{"enabled": true, "trustedProxies": []any{"10.0.0.0/8"}},
			"admin":          map[string]any{"password": "s3cret-pass"},
			"serviceMonitor": map[string]any{"enabled": true},
		},
		"3+20": {
			"core":      map[string]any{"replicas": 3},
			"replicant": map[string]any{"replicas": 20, "autoscaling": map[string]any{"enabled": false}},
		},
		"external-nats": {
			"cluster": map[string]any{"natsUrl": "nats://nats.nats.svc:4222"},
		},
		"strimzi": strimzi,
	}
	for _, vals := range sets {
		withClusterSecret(vals)
	}
	return sets
}

// testClusterSecret is the cluster.secret the value sets install with:
// the chart requires one (or cluster.existingSecret) and never makes one up.
const testClusterSecret = "test-cluster-secret-0123456789"

// withClusterSecret sets cluster.secret in vals unless they name a
// Secret or an external NATS, and returns vals.
func withClusterSecret(vals map[string]any) map[string]any {
	c, _ := vals["cluster"].(map[string]any)
	if c == nil {
		c = map[string]any{}
		vals["cluster"] = c
	}
	if c["existingSecret"] == nil && c["natsUrl"] == nil && c["secret"] == nil {
		c["secret"] = testClusterSecret
	}
	return vals
}

// rendered is one rendering of the chart, decoded.
type rendered struct {
	values   map[string]any // the coalesced values
	objs     map[string]runtime.Object
	config   string // culex.yaml of the ConfigMap
	monitors []serviceMonitor
}

// serviceMonitor mirrors the part of monitoring.coreos.com/v1 the chart
// uses; decoded strictly, so a misspelled field fails.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// renderFiles renders the chart with the Helm SDK as `helm install`
// (or `helm template`: lookup finds nothing) would, and returns the
// rendered files and the coalesced values.
func renderFiles(t *testing.T, vals map[string]any) (map[string]string, common.Values, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	caps := *common.DefaultCapabilities
	caps.KubeVersion = common.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}
	top, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, &caps)
	if err != nil {
		t.Fatal(err)
	}
	values, _ := top["Values"].(common.Values)
	files, err := engine.Render(ch, top)
	return files, values, err
}

// render renders the chart (renderFiles) and decodes every object
// strictly into its Kubernetes API type.
func render(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	files, values, err := renderFiles(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	dec := codecs.UniversalDeserializer()
	r := rendered{objs: make(map[string]runtime.Object), values: values}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if path.Ext(name) != ".yaml" || strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		for i, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s #%d: %v\n%s", name, i, err, doc)
			}
			if meta.Kind == "ServiceMonitor" {
				var sm serviceMonitor
				if err := yaml.UnmarshalStrict([]byte(doc), &sm); err != nil {
					t.Fatalf("%s: ServiceMonitor: %v", name, err)
				}
				r.monitors = append(r.monitors, sm)
				continue
			}
			obj, gvk, err := dec.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s #%d (%s %s): strict decoding: %v\n%s", name, i, meta.APIVersion, meta.Kind, err, doc)
			}
			m, err := runtimeMeta(obj)
			if err != nil {
				t.Fatal(err)
			}
			if m.GetNamespace() != "" && m.GetNamespace() != namespace {
				t.Errorf("%s %s in namespace %s, want the release's", gvk.Kind, m.GetName(), m.GetNamespace())
			}
			key := gvk.Kind + "/" + m.GetName()
			if _, dup := r.objs[key]; dup {
				t.Fatalf("%s rendered twice", key)
			}
			r.objs[key] = obj
		}
	}
	if cm, ok := r.objs["ConfigMap/"+release].(*corev1.ConfigMap); ok {
		r.config = cm.Data["culex.yaml"]
	} else {
		t.Fatalf("no ConfigMap %s", release)
	}
	return r
}

func stripComments(doc string) string {
	var out []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func runtimeMeta(obj runtime.Object) (interface {
	GetName() string
	GetNamespace() string
}, error) {
	m, ok := obj.(interface {
		GetName() string
		GetNamespace() string
	})
	if !ok {
		return nil, fmt.Errorf("%T has no object meta", obj)
	}
	return m, nil
}

func object[T runtime.Object](t *testing.T, r rendered, kind, name string) T {
	t.Helper()
	obj, ok := r.objs[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s %s rendered (have %v)", kind, name, slices.Sorted(maps.Keys(r.objs)))
	}
	return obj.(T)
}

// TestHelmChart renders the chart for each value set and checks that the
// objects are valid Kubernetes objects and agree with each other and with
// what culex serve accepts.
func TestHelmChart(t *testing.T) {
	for name, vals := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			// helm lint: chart metadata, template and YAML errors, warnings too.
			kv := common.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}
			for _, m := range lint.RunAll(chartDir, vals, namespace, lint.WithKubeVersion(&kv)).Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				}
			}
			r := render(t, vals)
			checkWorkloads(t, r)
			for _, role := range []string{"core", "replicant"} {
				checkPod(t, r, role)
			}
			checkServices(t, r)
			checkNetworkPolicy(t, r)
			for _, sm := range r.monitors {
				if sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
					t.Errorf("ServiceMonitor scrapes %+v, want port admin path /metrics", sm.Spec.Endpoints)
				}
				admin := object[*corev1.Service](t, r, "Service", release+"-admin")
				if !subset(sm.Spec.Selector.MatchLabels, admin.Labels) {
					t.Errorf("ServiceMonitor selects %v, which the admin Service %v lacks", sm.Spec.Selector.MatchLabels, admin.Labels)
				}
			}
		})
	}
}

// TestHelmSeedScenario: the default values are the seed's: 3 cores, 7
// replicants autoscaled to 20.
func TestHelmSeedScenario(t *testing.T) {
	r := render(t, withClusterSecret(map[string]any{}))
	sts := object[*appsv1.StatefulSet](t, r, "StatefulSet", release+"-core")
	hpa := object[*autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler", release+"-replicant")
	if *sts.Spec.Replicas != 3 || *hpa.Spec.MinReplicas != 7 || hpa.Spec.MaxReplicas != 20 {
		t.Errorf("defaults: %d cores, replicants %d to %d; want 3, 7 to 20", *sts.Spec.Replicas, *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	svc := object[*corev1.Service](t, r, "Service", release)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("MQTT Service type %s, want LoadBalancer", svc.Spec.Type)
	}
}

func value(r rendered, path string) any {
	var cur any = map[string]any(r.values)
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			if cv, ok := cur.(common.Values); ok {
				m = cv
			} else {
				return nil
			}
		}
		cur = m[k]
	}
	return cur
}

func intValue(r rendered, path string) int32 {
	switch v := value(r, path).(type) {
	case float64:
		return int32(v)
	case int:
		return int32(v)
	case int64:
		return int32(v)
	}
	return -1
}

// checkWorkloads: replica counts, the autoscaler's target and bounds, the
// headless Service behind the StatefulSet, one PDB per role.
func checkWorkloads(t *testing.T, r rendered) {
	sts := object[*appsv1.StatefulSet](t, r, "StatefulSet", release+"-core")
	if *sts.Spec.Replicas != intValue(r, "core.replicas") {
		t.Errorf("StatefulSet replicas %d, want core.replicas %d", *sts.Spec.Replicas, intValue(r, "core.replicas"))
	}
	hl := object[*corev1.Service](t, r, "Service", sts.Spec.ServiceName)
	if hl.Spec.ClusterIP != corev1.ClusterIPNone || !hl.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s behind the StatefulSet: clusterIP %q, publishNotReadyAddresses %v; want a headless Service publishing not-ready cores (they must find each other before they are ready)",
			hl.Name, hl.Spec.ClusterIP, hl.Spec.PublishNotReadyAddresses)
	}
	if !subset(hl.Spec.Selector, sts.Spec.Template.Labels) || !subset(sts.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
		t.Errorf("headless Service or StatefulSet selector does not select the core pods")
	}
	if (value(r, "core.persistence.enabled") == true) != (len(sts.Spec.VolumeClaimTemplates) == 1) {
		t.Errorf("core.persistence.enabled=%v but %d volume claim templates", value(r, "core.persistence.enabled"), len(sts.Spec.VolumeClaimTemplates))
	}
	dep := object[*appsv1.Deployment](t, r, "Deployment", release+"-replicant")
	if !subset(dep.Spec.Selector.MatchLabels, dep.Spec.Template.Labels) {
		t.Errorf("replicant Deployment selector does not select its pods")
	}
	hpaKey := "HorizontalPodAutoscaler/" + release + "-replicant"
	if value(r, "replicant.autoscaling.enabled") == true {
		hpa := object[*autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler", release+"-replicant")
		if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Name {
			t.Errorf("HPA scales %v, want the replicant Deployment", hpa.Spec.ScaleTargetRef)
		}
		if hpa.Spec.MaxReplicas != intValue(r, "replicant.autoscaling.maxReplicas") || *hpa.Spec.MinReplicas != intValue(r, "replicant.replicas") {
			t.Errorf("HPA %d to %d, want replicant.replicas to replicant.autoscaling.maxReplicas", *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
		}
		if dep.Spec.Replicas != nil {
			t.Errorf("Deployment sets replicas under an HPA: every upgrade would reset the autoscaler's choice")
		}
	} else {
		if _, ok := r.objs[hpaKey]; ok {
			t.Errorf("HPA rendered with autoscaling off")
		}
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != intValue(r, "replicant.replicas") {
			t.Errorf("Deployment replicas %v, want replicant.replicas %d", dep.Spec.Replicas, intValue(r, "replicant.replicas"))
		}
	}
	pdbs := 0
	for key, obj := range r.objs {
		pdb, ok := obj.(*policyv1.PodDisruptionBudget)
		if !ok {
			continue
		}
		pdbs++
		var tpl map[string]string
		switch {
		case strings.HasSuffix(key, "-core"):
			tpl = sts.Spec.Template.Labels
		case strings.HasSuffix(key, "-replicant"):
			tpl = dep.Spec.Template.Labels
		}
		if tpl == nil || !subset(pdb.Spec.Selector.MatchLabels, tpl) {
			t.Errorf("%s selects %v: not one role's pods", key, pdb.Spec.Selector.MatchLabels)
		}
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Errorf("%s: unhealthyPodEvictionPolicy %v, want AlwaysAllow (a crash-looping pod must not block node drains)", key, p)
		}
	}
	if pdbs != 2 {
		t.Errorf("%d PodDisruptionBudgets, want one per role", pdbs)
	}
}

// podOf returns a role's pod template and a pod name it gets.
func podOf(t *testing.T, r rendered, role string) (corev1.PodTemplateSpec, string) {
	if role == "core" {
		return object[*appsv1.StatefulSet](t, r, "StatefulSet", release+"-core").Spec.Template, release + "-core-0"
	}
	return object[*appsv1.Deployment](t, r, "Deployment", release+"-replicant").Spec.Template, release + "-replicant-5d8f7c9b4-x2x7k"
}

// podEnv resolves a container's environment as the kubelet would: values,
// the pod name, and keys of rendered Secrets (a Secret the chart does not
// render, such as one Strimzi makes, gets a placeholder).
func podEnv(t *testing.T, r rendered, c corev1.Container, podName string) map[string]string {
	env := make(map[string]string)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = podName
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if s, ok := r.objs["Secret/"+ref.Name].(*corev1.Secret); ok {
				v, ok := s.Data[ref.Key]
				if !ok {
					t.Errorf("%s: Secret %s has no key %q", e.Name, ref.Name, ref.Key)
				}
				env[e.Name] = string(v)
			} else {
				env[e.Name] = "placeholder-from-" + ref.Name
			}
		default:
			t.Errorf("env %s: unexpected source %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

// checkPod loads the role's config exactly as its container would (the
// ConfigMap's culex.yaml and the container's environment) with culex's own
// loader, and checks the pod against it: container ports, probes, mounts,
// the cluster's peers, shutdown timing.
func checkPod(t *testing.T, r rendered, role string) {
	tpl, podName := podOf(t, r, role)
	if len(tpl.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", role, len(tpl.Spec.Containers))
	}
	c := tpl.Spec.Containers[0]
	cfg := effectiveConfig(t, role+" pod", r.config, podEnv(t, r, c, podName))

	if got := getString(cfg, "cluster.role"); got != role {
		t.Errorf("%s pod runs as cluster.role %q", role, got)
	}
	if got := getString(cfg, "cluster.node_name"); got != podName {
		t.Errorf("%s pod: cluster.node_name %q, want the pod name %s", role, got, podName)
	}
	ports := make(map[string]int32)
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for scheme, port := range listenerPorts(t, cfg) {
		if name := schemePort[scheme]; ports[name] != int32(port) {
			t.Errorf("%s: %s listener on port %d, container port %q is %d", role, scheme, port, name, ports[name])
		}
		delete(ports, schemePort[scheme])
	}
	if admin := getString(cfg, "admin.listen"); admin == "" || ports["admin"] != int32(portOf(t, admin)) {
		t.Errorf("%s: admin.listen %q, container port admin %d", role, admin, ports["admin"])
	} else if strings.HasPrefix(admin, "127.") || strings.HasPrefix(admin, "localhost") {
		t.Errorf("%s: admin.listen %q is loopback: probes and the admin Service cannot reach it", role, admin)
	}
	delete(ports, "admin")
	checkCluster(t, r, role, cfg, ports)
	delete(ports, "cluster")
	delete(ports, "link")
	if len(ports) > 0 {
		t.Errorf("%s: container ports %v have no listener in the config", role, ports)
	}

	checkProbes(t, role, c)

	if !slices.Equal(c.Args, []string{"serve", "-c", "/etc/culex/culex.yaml"}) {
		t.Errorf("%s: args %v", role, c.Args)
	}
	mounts := map[string]string{"/etc/culex/culex.yaml": "the config file", getString(cfg, "data_dir"): "data_dir"}
	for key, f := range filePaths(cfg) {
		mounts[f] = key
	}
	for f, key := range mounts {
		if !mounted(c, tpl.Spec.Volumes, f) {
			t.Errorf("%s: %s %s lies on no volume of the pod", role, key, f)
		}
	}

	if tpl.Spec.SecurityContext == nil || tpl.Spec.SecurityContext.RunAsNonRoot == nil || !*tpl.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod does not require a non-root user", role)
	}
	pre := c.Lifecycle
	if pre == nil || pre.PreStop == nil || pre.PreStop.Sleep == nil || pre.PreStop.Sleep.Seconds <= 0 {
		t.Fatalf("%s: no preStop drain", role)
	}
	shutdown, err := time.ParseDuration(getString(cfg, "shutdown_timeout"))
	if err != nil {
		t.Fatal(err)
	}
	need := time.Duration(pre.PreStop.Sleep.Seconds)*time.Second + shutdown
	if grace := time.Duration(*tpl.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= need {
		t.Errorf("%s: terminationGracePeriodSeconds %v does not cover preStop + shutdown_timeout = %v", role, grace, need)
	}
}

// readyzBound is how long one /readyz answer may take: health.Timeout in
// the broker (internal/health), plus the answer's way back.
const readyzBound = 5 * time.Second

// minStartup is the least time the startup probe must give a node before
// the kubelet restarts it (opening a large store, joining the cluster).
const minStartup = 5 * time.Minute

// checkProbes: readiness asks /readyz?scope=node (not the shared checks
// that fail on every pod at once) and waits longer than a readiness
// answer may take, failing only after more than one miss; liveness asks
// /healthz; the startup probe allows a long start.
func checkProbes(t *testing.T, role string, c corev1.Container) {
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz?scope=node"}, {"liveness", c.LivenessProbe, "/healthz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", role, p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("admin") {
			t.Errorf("%s: %s probe GET %s on %v, want %s on the admin port", role, p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	if r := c.ReadinessProbe; r != nil {
		if timeout := time.Duration(r.TimeoutSeconds) * time.Second; timeout <= readyzBound {
			t.Errorf("%s: readiness timeoutSeconds %d (default 1 when unset) is not above the %v a /readyz answer may take", role, r.TimeoutSeconds, readyzBound)
		}
		if r.FailureThreshold < 2 {
			t.Errorf("%s: readiness failureThreshold %d: one slow answer takes the pod out", role, r.FailureThreshold)
		}
	}
	if s := c.StartupProbe; s != nil {
		if window := time.Duration(s.PeriodSeconds*s.FailureThreshold) * time.Second; window < minStartup {
			t.Errorf("%s: the startup probe restarts a node still starting after %v, want at least %v", role, window, minStartup)
		}
	}
}

// TestHelmClusterSecret: the chart never makes the cluster secret up (a
// value generated at render time changes on every `helm template` and
// splits the cluster): without cluster.secret, cluster.existingSecret or
// a Secret already in the release, the render fails naming the keys. The
// pods carry a checksum of the chart's Secret, so a changed secret
// restarts them.
func TestHelmClusterSecret(t *testing.T) {
	if _, _, err := renderFiles(t, map[string]any{}); err == nil || !strings.Contains(err.Error(), "cluster.secret or cluster.existingSecret is required") {
		t.Errorf("render without a cluster secret: %v, want an error naming cluster.secret and cluster.existingSecret", err)
	}
	for _, vals := range []map[string]any{
		{"cluster": map[string]any{"existingSecret": "my-cluster-secret"}},
		{"cluster": map[string]any{"natsUrl": "nats://nats.nats.svc:4222"}},
	} {
		if _, _, err := renderFiles(t, vals); err != nil {
			t.Errorf("render with %v: %v", vals, err)
		}
	}
	sum := func(secret string) string {
		r := render(t, map[string]any{"cluster": map[string]any{"secret": secret}})
		tpl, _ := podOf(t, r, "core")
		s := object[*corev1.Secret](t, r, "Secret", release)
		if got := string(s.Data["cluster-secret"]); got != secret {
			t.Errorf("Secret cluster-secret %q, want cluster.secret %q", got, secret)
		}
		return tpl.Annotations["checksum/secret"]
	}
	a, b := sum("first-secret-0123456789"), sum("second-secret-0123456789")
	if a == "" || a == b || a != sum("first-secret-0123456789") {
		t.Errorf("checksum/secret %q then %q: want one that exists, is stable, and changes with the secret", a, b)
	}
}

// checkCluster: an embedded cluster listens on the container's cluster port
// and its peers are the cores' headless Service on that port; an external
// NATS opens no cluster port.
func checkCluster(t *testing.T, r rendered, role string, cfg map[string]any, ports map[string]int32) {
	if nats := value(r, "cluster.natsUrl"); nats != nil && nats != "" {
		if getString(cfg, "cluster.nats_url") != nats || getString(cfg, "cluster.listen") != "" {
			t.Errorf("%s: external NATS %v: cluster.nats_url %q, listen %q", role, nats, getString(cfg, "cluster.nats_url"), getString(cfg, "cluster.listen"))
		}
		if _, ok := ports["cluster"]; ok {
			t.Errorf("%s: a cluster port with an external NATS", role)
		}
		if _, ok := ports["link"]; ok {
			t.Errorf("%s: a link port with an external NATS (no cluster.link_listen)", role)
		}
		return
	}
	if link := getString(cfg, "cluster.link_listen"); link == "" || ports["link"] != int32(portOf(t, link)) {
		t.Errorf("%s: cluster.link_listen %q, container port link %d: a link port the NetworkPolicy admits must be fixed", role, link, ports["link"])
	}
	listen := getString(cfg, "cluster.listen")
	if listen == "" || ports["cluster"] != int32(portOf(t, listen)) {
		t.Fatalf("%s: cluster.listen %q, container port cluster %d", role, listen, ports["cluster"])
	}
	sts := object[*appsv1.StatefulSet](t, r, "StatefulSet", release+"-core")
	hl := object[*corev1.Service](t, r, "Service", sts.Spec.ServiceName)
	peers, _ := get(cfg, "cluster.peers").([]any)
	want := fmt.Sprintf("%s.%s.svc.cluster.local:%d", hl.Name, namespace, ports["cluster"])
	if len(peers) != 1 || peers[0] != want {
		t.Errorf("%s: cluster.peers %v, want the cores' headless Service %s", role, peers, want)
	}
	found := false
	for _, p := range hl.Spec.Ports {
		found = found || p.Port == ports["cluster"] && p.TargetPort == intstr.FromString("cluster")
	}
	if !found {
		t.Errorf("headless Service %s does not carry the cluster port %d", hl.Name, ports["cluster"])
	}
	if getString(cfg, "cluster.secret") == "" && getString(cfg, "cluster.tls.ca_file") == "" {
		t.Errorf("%s: the cluster port is unauthenticated", role)
	}
}

// mounted reports whether file lies under one of the container's mounts
// (an exact subPath mount counts) backed by a pod volume or claim.
func mounted(c corev1.Container, vols []corev1.Volume, file string) bool {
	for _, m := range c.VolumeMounts {
		if file == m.MountPath || strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if slices.ContainsFunc(vols, func(v corev1.Volume) bool { return v.Name == m.Name }) || m.Name == "data" {
				return true
			}
		}
	}
	return false
}

// checkServices: every Service port targets a container port of the pods it
// selects; the MQTT Service is the configured type with the device ports.
func checkServices(t *testing.T, r rendered) {
	var pods []corev1.PodTemplateSpec
	for _, role := range []string{"core", "replicant"} {
		p, _ := podOf(t, r, role)
		pods = append(pods, p)
	}
	for key, obj := range r.objs {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			continue
		}
		selected := 0
		for _, p := range pods {
			if !subset(svc.Spec.Selector, p.Labels) {
				continue
			}
			selected++
			for _, sp := range svc.Spec.Ports {
				if !slices.ContainsFunc(p.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool {
					return sp.TargetPort == intstr.FromString(cp.Name)
				}) {
					t.Errorf("%s port %s targets %s, which pod %v does not have", key, sp.Name, sp.TargetPort.String(), p.Labels)
				}
			}
		}
		if selected == 0 {
			t.Errorf("%s selects no pod", key)
		}
	}
	svc := object[*corev1.Service](t, r, "Service", release)
	if string(svc.Spec.Type) != value(r, "service.type") {
		t.Errorf("MQTT Service type %s, want service.type", svc.Spec.Type)
	}
	want := []int32{1883, 8083}
	if value(r, "tls.enabled") == true {
		want = append(want, 8883, 8084)
	}
	var got []int32
	for _, p := range svc.Spec.Ports {
		got = append(got, p.Port)
	}
	if !slices.Equal(got, want) {
		t.Errorf("MQTT Service ports %v, want %v", got, want)
	}
	admin := object[*corev1.Service](t, r, "Service", release+"-admin")
	if admin.Spec.Type != corev1.ServiceTypeClusterIP || admin.Spec.Ports[0].Port != intValue(r, "admin.port") {
		t.Errorf("admin Service %s port %d, want ClusterIP on admin.port", admin.Spec.Type, admin.Spec.Ports[0].Port)
	}
	if !admin.Spec.PublishNotReadyAddresses {
		t.Errorf("admin Service leaves out pods that are not ready: the dashboard and API would be gone during an outage")
	}
}

// checkNetworkPolicy: the cluster and link ports admit only the release's
// pods; the MQTT ports admit everyone.
func checkNetworkPolicy(t *testing.T, r rendered) {
	np := object[*networkingv1.NetworkPolicy](t, r, "NetworkPolicy", release)
	tpl, _ := podOf(t, r, "core")
	if !subset(np.Spec.PodSelector.MatchLabels, tpl.Labels) {
		t.Errorf("NetworkPolicy does not select the culex pods")
	}
	open, private := map[string]bool{}, map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			name := p.Port.String()
			if len(rule.From) == 0 {
				open[name] = true
				continue
			}
			if name == "cluster" || name == "link" {
				private[name] = true
				for _, peer := range rule.From {
					if peer.PodSelector == nil || peer.IPBlock != nil || peer.NamespaceSelector != nil ||
						!subset(peer.PodSelector.MatchLabels, tpl.Labels) || len(peer.PodSelector.MatchLabels) < 2 {
						t.Errorf("the %s port admits %+v, want only this release's pods", name, peer)
					}
				}
			}
		}
	}
	if open["cluster"] || open["link"] || open["admin"] {
		t.Errorf("NetworkPolicy opens %v to everyone; the cluster, link and admin ports must stay private", open)
	}
	if value(r, "cluster.natsUrl") == nil || value(r, "cluster.natsUrl") == "" {
		if !private["cluster"] || !private["link"] {
			t.Errorf("NetworkPolicy admits the release's pods to %v, want the cluster and link ports: nodes would not reach each other", private)
		}
	}
	if !open["mqtt"] || !open["ws"] || (value(r, "tls.enabled") == true && !(open["mqtts"] && open["wss"])) {
		t.Errorf("NetworkPolicy open ports %v, want every MQTT port", open)
	}
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
