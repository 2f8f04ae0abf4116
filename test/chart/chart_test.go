// Package chart tests the Helm chart, the kustomize manifests and the samples against a real API
// server: everything is applied with a server-side dry run, so the API server's own validation
// (schemas, CEL rules, RBAC object checks) judges them.
package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var (
	root  = filepath.Join("..", "..")
	chart = filepath.Join(root, "charts", "cryptoassets-operator")
	k8s   client.Client
)

func TestMain(m *testing.M) {
	if code, ok := testassets.Check("KUBEBUILDER_ASSETS", "HELM", "PROMETHEUS_OPERATOR_CRDS"); !ok {
		os.Exit(code)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	env := &envtest.Environment{
		// The Prometheus Operator's own CRDs (hack/setup-tools.sh takes them from its published
		// module) judge the chart's monitoring objects.
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), os.Getenv("PROMETHEUS_OPERATOR_CRDS")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testassets.StartEnv(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test API server:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = apiextensionsv1.AddToScheme(scheme)
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, ns := range []string{"cryptoassets-system", "team-a", "team-b", "samples"} {
		if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Getenv("HELM"), args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

func template(t *testing.T, set ...string) []*unstructured.Unstructured {
	t.Helper()
	return templateRelease(t, "rel", set...)
}

// templateRelease renders the chart as `helm template RELEASE` does on a machine without a
// cluster: no --kube-version.
func templateRelease(t *testing.T, release string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", release, chart, "--namespace", "cryptoassets-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

func decode(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decoding manifests: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// dryRunApply sends every object to the API server as a server-side apply with dryRun=All.
func dryRunApply(t *testing.T, objs []*unstructured.Unstructured, defaultNS string) {
	t.Helper()
	for _, u := range objs {
		if u.GetNamespace() == "" && u.GetKind() != "CustomResourceDefinition" && !strings.HasPrefix(u.GetKind(), "Cluster") && u.GetKind() != "Namespace" {
			u.SetNamespace(defaultNS)
		}
		err := k8s.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
			client.DryRunAll, client.FieldOwner("chart-test"), client.ForceOwnership)
		if err != nil {
			t.Errorf("%s %s/%s rejected by the API server: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	out := map[string]int{}
	for _, u := range objs {
		out[u.GetKind()]++
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == kind {
			return u
		}
	}
	return nil
}

func TestHelmLint(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chart); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestChartRendersValidObjects(t *testing.T) {
	cases := []struct {
		name  string
		set   []string
		kinds map[string]int
	}{
		{"defaults", nil, map[string]int{
			"CustomResourceDefinition": 1, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1,
			"Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1}},
		{"namespace scoped", []string{"watchNamespaces={team-a,team-b}"}, map[string]int{
			"CustomResourceDefinition": 1, "ServiceAccount": 1, "ClusterRole": 2, "Role": 3, "RoleBinding": 3, "Deployment": 1, "Service": 1}},
		{"no CRDs, no metrics, no leader election, no aggregated roles", []string{"crds.install=false", "metrics.enabled=false", "leaderElection.enabled=false",
			"aggregateClusterRoles=false"},
			map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Deployment": 1}},
		{"monitoring", []string{"monitoring.serviceMonitor.enabled=true", "monitoring.podMonitor.enabled=true",
			"monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true"}, map[string]int{
			"CustomResourceDefinition": 1, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1,
			"Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1,
			"ServiceMonitor": 1, "PodMonitor": 1, "PrometheusRule": 1, "ConfigMap": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := template(t, tc.set...)
			if got := kinds(objs); !equality.Semantic.DeepEqual(got, tc.kinds) {
				t.Errorf("rendered kinds %v, want %v", got, tc.kinds)
			}
			dryRunApply(t, objs, "cryptoassets-system")
		})
	}
}

func TestChartOperatorDeployment(t *testing.T) {
	d := find(template(t, "image.tag=v9.9.9", "watchNamespaces={team-a}", "extraArgs={--zap-devel}",
		"extraEnv[0].name=HTTPS_PROXY", "extraEnv[0].value=http://proxy:3128"), "Deployment")
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	if c["image"] != "ghcr.io/cryptoassets/cryptoassets-operator:v9.9.9" {
		t.Errorf("image %v", c["image"])
	}
	args := fmt.Sprint(c["args"])
	for _, want := range []string{"operator", "--leader-elect=true", "--watch-namespace=team-a", "--zap-devel"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %s lack %s", args, want)
		}
	}
	env := fmt.Sprint(c["env"])
	if !strings.Contains(env, "CRYPTOASSETS_HELPER_IMAGE value:ghcr.io/cryptoassets/cryptoassets-operator:v9.9.9") {
		t.Errorf("helper image does not default to the operator's image: %s", env)
	}
	if !strings.Contains(env, "name:HTTPS_PROXY value:http://proxy:3128") {
		t.Errorf("extraEnv not in the environment: %s", env)
	}
	sc := c["securityContext"].(map[string]any)
	if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false || sc["runAsNonRoot"] != true ||
		fmt.Sprint(sc["capabilities"]) != "map[drop:[ALL]]" || fmt.Sprint(sc["seccompProfile"]) != "map[type:RuntimeDefault]" {
		t.Errorf("operator container is not locked down: %v", sc)
	}
}

// TestChartCRDMatchesGenerated guards against the chart shipping a CRD other than the one the
// Go types generate, and checks the keep policy.
func TestChartCRDMatchesGenerated(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "config", "crd", "bases", "cryptoassets.io_cryptoassets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, want); err != nil {
		t.Fatal(err)
	}
	u := find(template(t), "CustomResourceDefinition")
	got := &apiextensionsv1.CustomResourceDefinition{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got.Spec, want.Spec) {
		t.Errorf("the chart's CRD differs from config/crd/bases; run `make manifests`")
	}
	if got.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("chart CRD lacks helm.sh/resource-policy: keep")
	}
	if u := find(template(t, "crds.keep=false"), "CustomResourceDefinition"); u.GetAnnotations()["helm.sh/resource-policy"] != "" {
		t.Errorf("crds.keep=false still keeps the CRD")
	}
}

// TestChartNames: `helm install cryptoassets` names things cryptoassets-operator, not
// cryptoassets-cryptoassets-operator, and the overrides work.
func TestChartNames(t *testing.T) {
	for _, tc := range []struct {
		release string
		set     []string
		want    string
	}{
		{"cryptoassets", nil, "cryptoassets-operator"},
		{"cryptoassets-operator", nil, "cryptoassets-operator"},
		{"payments", nil, "payments-cryptoassets-operator"},
		{"cryptoassets", []string{"fullnameOverride=coins"}, "coins"},
		{"payments", []string{"nameOverride=coins"}, "payments-coins"},
	} {
		objs := templateRelease(t, tc.release, tc.set...)
		if d := find(objs, "Deployment"); d == nil || d.GetName() != tc.want {
			t.Errorf("release %s %v: Deployment %v, want %s", tc.release, tc.set, d.GetName(), tc.want)
		}
		for _, u := range objs {
			if u.GetKind() == "CustomResourceDefinition" {
				continue
			}
			if n := u.GetName(); !strings.HasPrefix(n, tc.want) || strings.Contains(n, "cryptoassets-cryptoassets") {
				t.Errorf("release %s %v: %s %s", tc.release, tc.set, u.GetKind(), n)
			}
		}
	}
}

// TestChartMonitoringObjects: the monitoring objects are what the Prometheus Operator and Grafana
// look for, and the API server (holding the Prometheus Operator's CRDs) accepts them.
func TestChartMonitoringObjects(t *testing.T) {
	objs := templateRelease(t, "cryptoassets", "monitoring.serviceMonitor.enabled=true", "monitoring.podMonitor.enabled=true",
		"monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true", "monitoring.dashboard.namespace=samples",
		"monitoring.prometheusRule.labels.release=prom")
	dryRunApply(t, objs, "cryptoassets-system")
	pm := find(objs, "PodMonitor")
	if sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels"); sel["app.kubernetes.io/name"] != "cryptoassets-helper" {
		t.Errorf("the PodMonitor selects %v, not the helper pods", sel)
	}
	rule := find(objs, "PrometheusRule")
	if rule.GetLabels()["release"] != "prom" {
		t.Errorf("PrometheusRule labels %v lack the selector label", rule.GetLabels())
	}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	alerts := map[string]bool{}
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			alerts[fmt.Sprint(r.(map[string]any)["alert"])] = true
		}
	}
	for _, want := range []string{"CryptoassetsEventsUndelivered", "CryptoassetsSendPending", "CryptoassetsBackendUnreachable",
		"CryptoassetsNoActiveHelper", "CryptoassetsCatchUpFailing", "CryptoassetsRescanFailed", "CryptoassetsOperatorReconcileErrors"} {
		if !alerts[want] {
			t.Errorf("no alert %s among %v", want, alerts)
		}
	}
	cm := find(objs, "ConfigMap")
	if cm.GetNamespace() != "samples" || cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap %s/%s labels %v", cm.GetNamespace(), cm.GetName(), cm.GetLabels())
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	var dashboard map[string]any
	if err := json.Unmarshal([]byte(data["cryptoassets.json"]), &dashboard); err != nil || dashboard["uid"] != "cryptoassets" {
		t.Errorf("the dashboard is not the JSON in files/dashboard.json: %v", err)
	}
	// The aggregated roles extend view and edit.
	for _, u := range objs {
		if u.GetKind() == "ClusterRole" && strings.HasSuffix(u.GetName(), "-view") && u.GetLabels()["rbac.authorization.k8s.io/aggregate-to-view"] != "true" {
			t.Errorf("%s does not aggregate to view", u.GetName())
		}
		if u.GetKind() == "ClusterRole" && strings.HasSuffix(u.GetName(), "-edit") && u.GetLabels()["rbac.authorization.k8s.io/aggregate-to-edit"] != "true" {
			t.Errorf("%s does not aggregate to edit", u.GetName())
		}
	}
	// Without metrics there is nothing for a ServiceMonitor to scrape: refused with the reason.
	if _, err := helm(t, "template", "cryptoassets", chart, "--set", "monitoring.serviceMonitor.enabled=true", "--set", "metrics.enabled=false"); err == nil ||
		!strings.Contains(err.Error(), "monitoring.serviceMonitor.enabled needs metrics.enabled") {
		t.Errorf("a ServiceMonitor without metrics: %v", err)
	}
}

func TestChartValuesSchemaRejectsBadValues(t *testing.T) {
	for _, set := range []string{"logLevel=loud", "replicaCount=0", "image.pullPolicy=Sometimes", "watchNamespaces={Bad_NS}", "unknownKey=1",
		"replicaCount=2,leaderElection.enabled=false", "monitoring.prometheusRule.sendPendingMinutes=0", "monitoring.podMonitor.interval=often"} {
		if _, err := helm(t, "template", "rel", chart, "--set", set); err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") {
			t.Errorf("--set %s: want a schema error, got %v", set, err)
		}
	}
}

func TestKustomizeAndSamples(t *testing.T) {
	out, err := exec.Command("kubectl", "kustomize", filepath.Join(root, "config", "default")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v", err)
	}
	objs := decode(t, string(out))
	if kinds(objs)["Deployment"] != 1 || kinds(objs)["CustomResourceDefinition"] != 1 {
		t.Errorf("config/default renders %v", kinds(objs))
	}
	dryRunApply(t, objs, "cryptoassets-system")
	pinnedImages(t, "config/default", objs)
	pinnedImages(t, "the chart", template(t))

	samples, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	assets := 0
	for _, f := range samples {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs := decode(t, string(raw))
		assets += kinds(objs)["CryptoAsset"]
		dryRunApply(t, objs, "samples")
	}
	if assets < 4 {
		t.Errorf("want a sample per backend (4), found %d CryptoAssets", assets)
	}
}

// pinnedImages fails for a container image without a tag, with :latest, or without a pull policy:
// a cluster pulls those on every start, and one without a registry cannot start them at all.
func pinnedImages(t *testing.T, what string, objs []*unstructured.Unstructured) {
	t.Helper()
	n := 0
	for _, u := range objs {
		for _, field := range [][]string{{"spec", "template", "spec", "containers"}, {"spec", "template", "spec", "initContainers"}} {
			cs, _, _ := unstructured.NestedSlice(u.Object, field...)
			for _, c := range cs {
				m, _ := c.(map[string]any)
				image, _ := m["image"].(string)
				policy, _ := m["imagePullPolicy"].(string)
				n++
				last := image[strings.LastIndex(image, "/")+1:]
				if !strings.Contains(last, ":") || strings.HasSuffix(image, ":latest") {
					t.Errorf("%s: %s %s runs image %q: give a version", what, u.GetKind(), u.GetName(), image)
				}
				if policy == "" || policy == "Always" {
					t.Errorf("%s: %s %s: imagePullPolicy %q", what, u.GetKind(), u.GetName(), policy)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: no containers found", what)
	}
}

// TestAlertRules runs `promtool test rules` on the chart's PrometheusRule, rendered with the
// default thresholds, against testdata/alerts_test.yaml: a test per alert.
func TestAlertRules(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
			t.Fatal("PROMTOOL not set; `make test` builds promtool into bin/")
		}
		t.Skip("PROMTOOL not set; `make test` runs the alert tests")
	}
	rule := find(templateRelease(t, "cryptoassets", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
	spec, _, _ := unstructured.NestedMap(rule.Object, "spec")
	rules, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"rules.yaml": rules, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	out, err = exec.Command(promtool, "test", "rules", filepath.Join(dir, "alerts_test.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every alert of the rule has a test.
	for _, g := range spec["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			if name := fmt.Sprint(r.(map[string]any)["alert"]); !strings.Contains(string(tests), "alertname: "+name+"\n") {
				t.Errorf("alert %s has no promtool test", name)
			}
		}
	}
}

// TestCRDDescriptionsReadAsProse: `kubectl explain` shows descriptions as written, so a Go
// comment's line breaks must not survive inside a sentence.
func TestCRDDescriptionsReadAsProse(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "config", "crd", "bases", "cryptoassets.io_cryptoassets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	checked := 0
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if s, ok := val.(string); ok && k == "description" {
					checked++
					for _, p := range strings.Split(s, "\n\n") {
						for _, line := range strings.Split(p, "\n")[1:] {
							if line != "" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "- ") && !strings.HasPrefix(line, "* ") &&
								!(line[0] >= '0' && line[0] <= '9') {
								t.Errorf("%s: a line break inside a sentence, before %q", path, line)
							}
						}
					}
					continue
				}
				walk(path+"."+k, val)
			}
		case []any:
			for i, val := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), val)
			}
		}
	}
	walk("crd", crd)
	if checked < 50 {
		t.Errorf("only %d descriptions found", checked)
	}
}
