package render

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/memlimit"
)

func sref(name, key string) v1alpha1.SecretKeyRef { return v1alpha1.SecretKeyRef{Name: name, Key: key} }

// asset returns a valid bitcoind/http asset; cases change what they test.
func asset(mutate ...func(*v1alpha1.CryptoAsset)) *v1alpha1.CryptoAsset {
	ca := &v1alpha1.CryptoAsset{
		ObjectMeta: metav1.ObjectMeta{Name: "btc", Namespace: "pay", UID: "uid-1"},
		Spec: v1alpha1.CryptoAssetSpec{
			Coin: "bitcoin", Network: "testnet", MaxTrackedConfirmations: 15,
			Backend: v1alpha1.BackendSpec{Type: v1alpha1.BackendBitcoind, Bitcoind: &v1alpha1.BitcoindBackend{
				URL: "http://node:18332", Flavor: v1alpha1.FlavorBitcoinCore, Wallet: "payments",
				UsernameSecretRef: sref("rpc", "user"), PasswordSecretRef: sref("rpc", "password"),
			}},
			Notify:   v1alpha1.NotifySpec{Method: v1alpha1.NotifyHTTP},
			Database: v1alpha1.DatabaseSpec{URLSecretRef: sref("db", "url")},
			API:      v1alpha1.APISpec{TokenSecretRef: sref("app", "token")},
		},
	}
	for _, m := range mutate {
		m(ca)
	}
	return ca
}

// An asset that does not set maxRequests renders the config it did before the field existed, so
// upgrading the operator does not restart its helper.
func TestUnsetMaxRequestsIsNotRendered(t *testing.T) {
	data, err := ConfigData(asset())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "maxRequests") {
		t.Errorf("maxRequests rendered although unset:\n%s", data)
	}
	set, err := ConfigData(asset(func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Bitcoind.MaxRequests = ptr.To(int32(2)) }))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(set), "maxRequests: 2") {
		t.Errorf("maxRequests: 2 not rendered:\n%s", set)
	}
}

func TestConfigForEveryBackendAndMethod(t *testing.T) {
	cases := []struct {
		name   string
		ca     *v1alpha1.CryptoAsset
		check  func(*testing.T, *config.Config)
		listen []string // listen addresses expected in the rendered file
	}{
		{"bitcoind with http hook and token", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Notify.HTTP = &v1alpha1.HTTPNotify{Port: 29999, TokenSecretRef: ptr.To(sref("rpc", "hook"))}
			ca.Spec.Backend.Bitcoind.Timeout = &metav1.Duration{Duration: 5 * time.Second}
			ca.Spec.Backend.Bitcoind.MaxRequests = ptr.To(int32(8))
		}), func(t *testing.T, c *config.Config) {
			b := c.Backend.Bitcoind
			if b.URL != "http://node:18332" || b.Wallet != "payments" || b.Timeout.Duration != 5*time.Second || b.MaxRequests != 8 ||
				b.UsernameFile != SecretsDir+"/bitcoind-username" || b.PasswordFile != SecretsDir+"/bitcoind-password" {
				t.Errorf("bitcoind config %+v", b)
			}
			if c.Notify.HTTP.Listen != ":29999" || c.Notify.HTTP.TokenFile != SecretsDir+"/notify-http-token" {
				t.Errorf("http notify %+v", c.Notify.HTTP)
			}
		}, []string{":29999", ":8080", ":9090"}},
		{"blockio with websocket", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendBlockIO, BlockIO: &v1alpha1.BlockIOBackend{
				APIKeySecretRef: sref("bio", "key"), PINSecretRef: sref("bio", "pin")}}
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyBlockIOWebsocket}
		}), func(t *testing.T, c *config.Config) {
			if c.Backend.BlockIO.URL != config.DefaultBlockIOURL || c.Backend.BlockIO.PINFile != SecretsDir+"/blockio-pin" {
				t.Errorf("blockio %+v", c.Backend.BlockIO)
			}
			if c.Notify.BlockIOWebsocket.URL != config.DefaultBlockIOSocketURL {
				t.Errorf("websocket %+v", c.Notify.BlockIOWebsocket)
			}
		}, nil},
		{"blockio with webhook", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendBlockIO, BlockIO: &v1alpha1.BlockIOBackend{
				APIKeySecretRef: sref("bio", "key"), PINSecretRef: sref("bio", "pin")}}
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyBlockIOWebhook,
				BlockIOWebhook: &v1alpha1.BlockIOWebhookNotify{PublicURL: "https://pay.example/hooks/blockio"}}
		}), func(t *testing.T, c *config.Config) {
			if c.Notify.BlockIOWebhook.PublicURL != "https://pay.example/hooks/blockio" {
				t.Errorf("webhook %+v", c.Notify.BlockIOWebhook)
			}
		}, []string{":28883"}},
		{"blockchain with poll", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Network = "mainnet"
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendBlockchain, Blockchain: &v1alpha1.BlockchainBackend{
				URL: "http://wallet:3000", GUIDSecretRef: sref("bc", "guid"), PasswordSecretRef: sref("bc", "pw"),
				SecondPasswordSecretRef: ptr.To(sref("bc", "pw2"))}}
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPoll, PollInterval: &metav1.Duration{Duration: 2 * time.Minute}}
			ca.Spec.EventRetention = &metav1.Duration{Duration: 240 * time.Hour}
		}), func(t *testing.T, c *config.Config) {
			if c.EventRetention.Duration != 240*time.Hour {
				t.Errorf("event retention %s", c.EventRetention)
			}
			if c.Asset.Namespace == "" {
				t.Errorf("the asset's namespace is not in the config: %+v", c.Asset)
			}
			if c.Backend.Blockchain.SecondPasswordFile != SecretsDir+"/blockchain-second-password" || c.Backend.Blockchain.APIKeyFile != "" {
				t.Errorf("blockchain %+v", c.Backend.Blockchain)
			}
			if c.Notify.PollInterval.Duration != 2*time.Minute {
				t.Errorf("poll interval %s", c.Notify.PollInterval)
			}
		}, nil},
		{"null with pipe", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendNull}
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPipe, Pipe: &v1alpha1.PipeNotify{Path: "/run/wn/fifo"}}
		}), func(t *testing.T, c *config.Config) {
			if c.Notify.Pipe.Path != "/run/wn/fifo" || c.Backend.Bitcoind != nil {
				t.Errorf("pipe %+v backend %+v", c.Notify.Pipe, c.Backend)
			}
		}, nil},
		{"redis with password and every event type", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyRedis, Redis: &v1alpha1.RedisNotify{
				Address: "redis:6379", Channel: "wn", PasswordSecretRef: ptr.To(sref("r", "pw"))}}
			ca.Spec.Events = []v1alpha1.EventTarget{
				{Name: "web", Type: v1alpha1.EventHTTP, HTTP: &v1alpha1.HTTPEventTarget{URL: "https://app/ev", SigningSecretRef: sref("app", "sign"),
					MaxInFlight: ptr.To[int32](1)}},
				{Name: "bus", Type: v1alpha1.EventRedis, Redis: &v1alpha1.RedisEventTarget{Address: "redis:6379"}},
				{Name: "pg", Type: v1alpha1.EventPGNotify},
				{Name: "sh", Type: v1alpha1.EventScript, Script: &v1alpha1.ScriptEventTarget{Command: []string{"/hooks/on-event", "--json"}}},
			}
		}), func(t *testing.T, c *config.Config) {
			if c.Notify.Redis.Channel != "wn" || c.Notify.Redis.PasswordFile != SecretsDir+"/notify-redis-password" {
				t.Errorf("redis %+v", c.Notify.Redis)
			}
			if len(c.Events) != 4 || c.Events[0].HTTP.SigningKeyFile != SecretsDir+"/event-web-signing-key" ||
				c.Events[0].HTTP.Timeout.Duration != config.DefaultEventTimeout || c.Events[0].HTTP.MaxInFlight != 1 ||
				c.Events[1].Redis.Channel != config.DefaultEventChannel ||
				c.Events[2].PGNotify.Channel != config.DefaultEventChannel || c.Events[3].Script.Command[0] != "/hooks/on-event" {
				t.Errorf("events %+v", c.Events)
			}
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Config(tc.ca)
			if err != nil {
				t.Fatalf("Config: %v", err)
			}
			if cfg.Kubernetes.Name != "btc" || cfg.Kubernetes.Namespace != "pay" || cfg.Asset.Name != "btc" {
				t.Errorf("owner %+v asset %+v", cfg.Kubernetes, cfg.Asset)
			}
			tc.check(t, cfg)
			data, err := cfg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			// The helper must accept exactly what the operator writes.
			back, err := config.Parse(data)
			if err != nil {
				t.Fatalf("the helper would refuse the rendered config: %v\n%s", err, data)
			}
			again, _ := back.Marshal()
			if string(again) != string(data) {
				t.Errorf("config does not round-trip:\n%s\n---\n%s", data, again)
			}
			for _, l := range tc.listen {
				if !strings.Contains(string(data), l) {
					t.Errorf("config lacks listen address %s", l)
				}
			}
		})
	}
}

func TestConfigConfirmations(t *testing.T) {
	for _, tc := range []struct {
		coin v1alpha1.Coin
		set  *int32
		want int32
	}{
		{"bitcoin", nil, 3}, {"litecoin", nil, 6}, {"dogecoin", nil, 6}, {"bitcoin", ptr.To(int32(1)), 1}, {"dogecoin", ptr.To(int32(12)), 12},
	} {
		ca := asset(func(ca *v1alpha1.CryptoAsset) { ca.Spec.Coin, ca.Spec.Confirmations = tc.coin, tc.set })
		cfg, err := Config(ca)
		if err != nil {
			t.Fatalf("%s: %v", tc.coin, err)
		}
		if cfg.Asset.Confirmations != tc.want {
			t.Errorf("%s with %v: confirmations %d, want %d", tc.coin, tc.set, cfg.Asset.Confirmations, tc.want)
		}
	}
}

func TestConfigRejectsWhatCELCannotSee(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.CryptoAsset)
		want   string
	}{
		{"dogecoin has no simnet", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Coin, ca.Spec.Network = "dogecoin", "simnet" }, `coin dogecoin has no network "simnet"`},
		{"unknown coin", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Coin = "monero" }, `unknown coin "monero"`},
		{"threshold above tracking", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Confirmations = ptr.To(int32(20)) }, "asset.maxTrackedConfirmations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Config(asset(tc.mutate))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDeployment(t *testing.T) {
	opts := Options{Image: "op:1", ImagePullPolicy: corev1.PullIfNotPresent}
	cases := []struct {
		name  string
		ca    *v1alpha1.CryptoAsset
		check func(*testing.T, *corev1.PodSpec, *corev1.PodTemplateSpec)
	}{
		{"defaults", asset(), func(t *testing.T, p *corev1.PodSpec, tpl *corev1.PodTemplateSpec) {
			c := p.Containers[0]
			if c.Image != "op:1" || c.ImagePullPolicy != corev1.PullIfNotPresent || p.InitContainers[0].Image != "op:1" {
				t.Errorf("image %s/%s", c.Image, c.ImagePullPolicy)
			}
			if c.Resources.Requests.Memory().Cmp(resource.MustParse("64Mi")) != 0 || c.Resources.Limits.Memory().Cmp(resource.MustParse("256Mi")) != 0 {
				t.Errorf("default resources %v", c.Resources)
			}
			if ref := envFrom(c.Env, memlimit.EnvVar); ref == nil || ref.ResourceFieldRef == nil || ref.ResourceFieldRef.Resource != "limits.memory" ||
				ref.ResourceFieldRef.Divisor.Value() != 1 {
				t.Errorf("%s is not the container's memory limit in bytes: %+v", memlimit.EnvVar, ref)
			}
			if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }) {
				t.Errorf("GOMEMLIMIT is set; it would override the limit the helper sets below the container's")
			}
			if tpl.Annotations[v1alpha1.ConfigHashAnnotation] != "HASH" {
				t.Errorf("hash annotation %v", tpl.Annotations)
			}
			if ports := portNames(c.Ports); ports != "api metrics walletnotify" {
				t.Errorf("ports %s", ports)
			}
			if *p.SecurityContext.RunAsNonRoot != true || *p.SecurityContext.FSGroup != HelperUID {
				t.Errorf("pod security %+v", p.SecurityContext)
			}
		}},
		{"overrides", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Helper = v1alpha1.HelperSpec{
				Image: "mine:2", ImagePullPolicy: corev1.PullAlways,
				Resources:         &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
				PodAnnotations:    map[string]string{"team": "payments"},
				PodLabels:         map[string]string{"app.kubernetes.io/instance": "hijack", "tier": "money"},
				Tolerations:       []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}},
				PriorityClassName: "critical",
			}
		}), func(t *testing.T, p *corev1.PodSpec, tpl *corev1.PodTemplateSpec) {
			c := p.Containers[0]
			if c.Image != "mine:2" || c.ImagePullPolicy != corev1.PullAlways || c.Resources.Limits.Memory().String() != "1Gi" {
				t.Errorf("overrides not applied: %s %s %v", c.Image, c.ImagePullPolicy, c.Resources)
			}
			if tpl.Annotations["team"] != "payments" || tpl.Annotations[v1alpha1.ConfigHashAnnotation] != "HASH" {
				t.Errorf("annotations %v", tpl.Annotations)
			}
			if tpl.Labels["app.kubernetes.io/instance"] != "btc" || tpl.Labels["tier"] != "money" {
				t.Errorf("pod labels %v: selector labels must win, others pass through", tpl.Labels)
			}
			if len(p.Tolerations) != 1 || p.PriorityClassName != "critical" {
				t.Errorf("scheduling %v %s", p.Tolerations, p.PriorityClassName)
			}
		}},
		{"pipe shares its directory", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPipe, Pipe: &v1alpha1.PipeNotify{Path: "/run/wn/fifo"}}
		}), func(t *testing.T, p *corev1.PodSpec, _ *corev1.PodTemplateSpec) {
			var mounted bool
			for _, m := range p.Containers[0].VolumeMounts {
				mounted = mounted || (m.Name == "walletnotify" && m.MountPath == "/run/wn")
			}
			if !mounted || portNames(p.Containers[0].Ports) != "api metrics" {
				t.Errorf("pipe: mounts %v ports %v", p.Containers[0].VolumeMounts, portNames(p.Containers[0].Ports))
			}
		}},
		{"a bitcoind sidecar shares the pipe's directory", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPipe, Pipe: &v1alpha1.PipeNotify{Path: "/run/wn/fifo"}}
			ca.Spec.Helper.Sidecars = []runtime.RawExtension{{Raw: []byte(`{"name":"bitcoind","image":"bitcoind:27",
				"args":["-walletnotify=echo %s >> /run/wn/fifo"]}`)}}
		}), func(t *testing.T, p *corev1.PodSpec, _ *corev1.PodTemplateSpec) {
			if len(p.Containers) != 2 || p.Containers[1].Name != "bitcoind" || p.Containers[1].Image != "bitcoind:27" {
				t.Fatalf("containers %+v", p.Containers)
			}
			m := p.Containers[1].VolumeMounts
			if len(m) != 1 || m[0].Name != "walletnotify" || m[0].MountPath != "/run/wn" {
				t.Errorf("sidecar mounts %+v", m)
			}
		}},
		{"webhook port", asset(func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendBlockIO, BlockIO: &v1alpha1.BlockIOBackend{
				APIKeySecretRef: sref("bio", "key"), PINSecretRef: sref("bio", "pin")}}
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyBlockIOWebhook,
				BlockIOWebhook: &v1alpha1.BlockIOWebhookNotify{PublicURL: "https://x.example/h", Port: 30001}}
		}), func(t *testing.T, p *corev1.PodSpec, _ *corev1.PodTemplateSpec) {
			if got := portNames(p.Containers[0].Ports); got != "api metrics blockio-webhook" || p.Containers[0].Ports[2].ContainerPort != 30001 {
				t.Errorf("ports %s %v", got, p.Containers[0].Ports)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Deployment(tc.ca, opts, "HASH")
			if d.Name != "btc-helper" || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != "Recreate" {
				t.Errorf("deployment %s replicas %d strategy %s", d.Name, *d.Spec.Replicas, d.Spec.Strategy.Type)
			}
			if len(d.OwnerReferences) != 1 || d.OwnerReferences[0].UID != "uid-1" || !*d.OwnerReferences[0].Controller {
				t.Errorf("owner %+v", d.OwnerReferences)
			}
			tc.check(t, &d.Spec.Template.Spec, &d.Spec.Template)
		})
	}
}

func portNames(ports []corev1.ContainerPort) string {
	var names []string
	for _, p := range ports {
		names = append(names, p.Name)
	}
	return strings.Join(names, " ")
}

func TestSecretsVolumeProjectsOnlyReferencedKeys(t *testing.T) {
	ca := asset(func(ca *v1alpha1.CryptoAsset) {
		ca.Spec.Notify.HTTP = &v1alpha1.HTTPNotify{TokenSecretRef: ptr.To(sref("rpc", "hook"))}
	})
	v := secretsVolume(ca)
	got := map[string]string{}
	for _, s := range v.Projected.Sources {
		for _, item := range s.Secret.Items {
			got[s.Secret.Name+"/"+item.Key] = item.Path
		}
	}
	want := map[string]string{
		"db/url": "database-url", "app/token": "api-token", "rpc/user": "bitcoind-username",
		"rpc/password": "bitcoind-password", "rpc/hook": "notify-http-token",
	}
	if len(got) != len(want) {
		t.Fatalf("projected %v, want %v", got, want)
	}
	for k, p := range want {
		if got[k] != p {
			t.Errorf("%s projected to %q, want %q", k, got[k], p)
		}
	}
	if *v.Projected.DefaultMode != 0o440 {
		t.Errorf("mode %o", *v.Projected.DefaultMode)
	}
}

func TestServiceAndRBAC(t *testing.T) {
	ca := asset()
	svc := Service(ca)
	if svc.Spec.Selector["app.kubernetes.io/instance"] != "btc" || len(svc.Spec.Ports) != 3 {
		t.Errorf("service %+v", svc.Spec)
	}
	role := Role(ca)
	var statusRule bool
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v == "delete" || v == "*" {
				t.Errorf("helper role grants %s: %+v", v, r)
			}
		}
		if r.Resources[0] == "cryptoassets/status" {
			statusRule = r.ResourceNames[0] == "btc"
		}
	}
	if !statusRule {
		t.Errorf("helper cannot patch its own status: %+v", role.Rules)
	}
	rb := RoleBinding(ca)
	if rb.RoleRef.Name != "btc-helper" || rb.Subjects[0].Name != "btc-helper" || rb.Subjects[0].Namespace != "pay" {
		t.Errorf("binding %+v", rb)
	}
}

func TestConfigHash(t *testing.T) {
	ca := asset()
	secrets := func() map[string]SecretData {
		return map[string]SecretData{
			"db":  {UID: "u-db", Data: map[string][]byte{"url": []byte("postgres://a")}},
			"app": {UID: "u-app", Data: map[string][]byte{"token": []byte("t")}},
			"rpc": {UID: "u-rpc", Data: map[string][]byte{"user": []byte("u"), "password": []byte("p"), "other": []byte("x")}},
		}
	}
	base, err := ConfigHash(ca, []byte("cfg"), secrets())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     string
		mutate  func(map[string]SecretData)
		changed bool
	}{
		{"same input", "cfg", func(map[string]SecretData) {}, false},
		{"unreferenced key", "cfg", func(s map[string]SecretData) { s["rpc"].Data["other"] = []byte("y") }, false},
		{"config", "cfg2", func(map[string]SecretData) {}, true},
		{"rotated password", "cfg", func(s map[string]SecretData) { s["rpc"].Data["password"] = []byte("p2") }, true},
		{"re-created Secret", "cfg", func(s map[string]SecretData) { d := s["db"]; d.UID = "u-db-2"; s["db"] = d }, true},
	} {
		s := secrets()
		tc.mutate(s)
		h, err := ConfigHash(ca, []byte(tc.cfg), s)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (h != base) != tc.changed {
			t.Errorf("%s: hash changed=%v, want %v", tc.name, h != base, tc.changed)
		}
	}
	s := secrets()
	delete(s["rpc"].Data, "password")
	if _, err := ConfigHash(ca, []byte("cfg"), s); err == nil || !strings.Contains(err.Error(), `no key "password"`) {
		t.Errorf("missing key: %v", err)
	}
}

func TestSidecarsRefused(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`{"image":"x"}`, "spec.helper.sidecars[0]: name is required"},
		{`{"name":"helper","image":"x"}`, `the name "helper" is taken`},
		{`{"name":"bitcoind"}`, "spec.helper.sidecars[0] (bitcoind): image is required"},
		{`{"name":"bitcoind","image":"x","imagee":"typo"}`, `unknown field "imagee"`},
		{`{"name":"bitcoind","image":"x","ports":"8332"}`, "is not a container spec"},
	} {
		ca := &v1alpha1.CryptoAsset{}
		ca.Spec.Helper.Sidecars = []runtime.RawExtension{{Raw: []byte(tc.raw)}}
		if _, err := Sidecars(ca); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.raw, err, tc.want)
		}
	}
}

// envFrom is where the variable name takes its value from, nil when it is absent or a plain value.
func envFrom(env []corev1.EnvVar, name string) *corev1.EnvVarSource {
	for _, e := range env {
		if e.Name == name {
			return e.ValueFrom
		}
	}
	return nil
}
