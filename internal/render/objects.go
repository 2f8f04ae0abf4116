package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/memlimit"
)

// Port names on the helper container and Service.
const (
	PortAPI        = "api"
	PortMetrics    = "metrics"
	PortWalletHTTP = "walletnotify"
	PortWebhook    = "blockio-webhook"
)

// Options are the operator-wide inputs of rendering.
type Options struct {
	// Image is the helper image when the CryptoAsset does not override it: the operator's own.
	Image string
	// ImagePullPolicy applies when the CryptoAsset does not set one.
	ImagePullPolicy corev1.PullPolicy
}

// HelperName is the name of every object the operator creates for ca.
func HelperName(ca *v1alpha1.CryptoAsset) string { return ca.Name + "-helper" }

// SelectorLabels select the helper pod. They must never change: a Deployment's selector is immutable.
func SelectorLabels(ca *v1alpha1.CryptoAsset) map[string]string {
	return map[string]string{
		v1alpha1.LabelName:     v1alpha1.HelperAppName,
		v1alpha1.LabelInstance: ca.Name,
	}
}

// Labels are set on every object the operator creates for ca.
func Labels(ca *v1alpha1.CryptoAsset) map[string]string {
	l := SelectorLabels(ca)
	l[v1alpha1.LabelComponent] = v1alpha1.HelperComponent
	l[v1alpha1.LabelManagedBy] = v1alpha1.ManagedBy
	l[v1alpha1.LabelPartOf] = v1alpha1.PartOf
	l[v1alpha1.LabelCoin] = string(ca.Spec.Coin)
	return l
}

func objectMeta(ca *v1alpha1.CryptoAsset) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      HelperName(ca),
		Namespace: ca.Namespace,
		Labels:    Labels(ca),
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion:         v1alpha1.GroupVersion.String(),
			Kind:               "CryptoAsset",
			Name:               ca.Name,
			UID:                ca.UID,
			Controller:         ptr.To(true),
			BlockOwnerDeletion: ptr.To(true),
		}},
	}
}

// ConfigMap carries the helper's config file.
func ConfigMap(ca *v1alpha1.CryptoAsset, configData []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: objectMeta(ca),
		Data:       map[string]string{ConfigKey: string(configData)},
	}
}

// ServiceAccount is the helper's identity.
func ServiceAccount(ca *v1alpha1.CryptoAsset) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: objectMeta(ca)}
}

// Role allows the helper exactly what it needs: to watch its own CryptoAsset for rescan requests,
// patch its status with rescan progress, and record Events.
func Role(ca *v1alpha1.CryptoAsset) *rbacv1.Role {
	group := v1alpha1.GroupVersion.Group
	return &rbacv1.Role{
		ObjectMeta: objectMeta(ca),
		Rules: []rbacv1.PolicyRule{
			// list and watch are limited by name too: the helper's cache lists with a
			// metadata.name field selector, which resourceNames allows.
			{APIGroups: []string{group}, Resources: []string{"cryptoassets"}, ResourceNames: []string{ca.Name}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{group}, Resources: []string{"cryptoassets/status"}, ResourceNames: []string{ca.Name}, Verbs: []string{"get", "patch", "update"}},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	}
}

// RoleBinding binds Role to ServiceAccount.
func RoleBinding(ca *v1alpha1.CryptoAsset) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: objectMeta(ca),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: HelperName(ca)},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: HelperName(ca), Namespace: ca.Namespace}},
	}
}

func servicePorts(ca *v1alpha1.CryptoAsset) []corev1.ServicePort {
	ports := []corev1.ServicePort{
		{Name: PortAPI, Port: APIPort(ca), TargetPort: intstr.FromString(PortAPI), Protocol: corev1.ProtocolTCP},
		{Name: PortMetrics, Port: config.DefaultMetricsPort, TargetPort: intstr.FromString(PortMetrics), Protocol: corev1.ProtocolTCP},
	}
	if p := NotifyHTTPPort(ca); p != 0 {
		ports = append(ports, corev1.ServicePort{Name: PortWalletHTTP, Port: p, TargetPort: intstr.FromString(PortWalletHTTP), Protocol: corev1.ProtocolTCP})
	}
	if p := WebhookPort(ca); p != 0 {
		ports = append(ports, corev1.ServicePort{Name: PortWebhook, Port: p, TargetPort: intstr.FromString(PortWebhook), Protocol: corev1.ProtocolTCP})
	}
	return ports
}

// Service exposes the API, metrics and notification ports.
func Service(ca *v1alpha1.CryptoAsset) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: objectMeta(ca),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: SelectorLabels(ca),
			Ports:    servicePorts(ca),
		},
	}
}

// defaultResources fit an idle helper with room for bursts of notifications; users override them.
func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(int64(HelperUID)),
		RunAsGroup:               ptr.To(int64(HelperUID)),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// secretsVolume projects exactly the referenced keys of the referenced Secrets, each under the file
// name the config file points to. Nothing else of those Secrets reaches the pod.
func secretsVolume(ca *v1alpha1.CryptoAsset) corev1.Volume {
	bySecret := map[string][]corev1.KeyToPath{}
	var order []string
	for _, u := range ca.Spec.SecretUses() {
		if _, ok := bySecret[u.Ref.Name]; !ok {
			order = append(order, u.Ref.Name)
		}
		bySecret[u.Ref.Name] = append(bySecret[u.Ref.Name], corev1.KeyToPath{Key: u.Ref.Key, Path: u.Purpose})
	}
	var sources []corev1.VolumeProjection
	for _, name := range order {
		sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: name},
			Items:                bySecret[name],
		}})
	}
	return corev1.Volume{Name: "secrets", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources:     sources,
		DefaultMode: ptr.To(int32(0o440)),
	}}}
}

// Deployment runs one helper: a single replica with the Recreate strategy, so an old and a new pod
// never broadcast at the same time (the ledger's advisory lock is the second guard).
func Deployment(ca *v1alpha1.CryptoAsset, opts Options, configHash string) *appsv1.Deployment {
	h := ca.Spec.Helper
	image := opts.Image
	if h.Image != "" {
		image = h.Image
	}
	pullPolicy := opts.ImagePullPolicy
	if h.ImagePullPolicy != "" {
		pullPolicy = h.ImagePullPolicy
	}
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	resources := defaultResources()
	if h.Resources != nil {
		resources = *h.Resources.DeepCopy()
	}

	podLabels := map[string]string{}
	for k, v := range h.PodLabels {
		podLabels[k] = v
	}
	for k, v := range Labels(ca) { // ours win: the selector must keep matching
		podLabels[k] = v
	}
	podAnnotations := map[string]string{}
	for k, v := range h.PodAnnotations {
		podAnnotations[k] = v
	}
	podAnnotations[v1alpha1.ConfigHashAnnotation] = configHash
	podAnnotations["kubectl.kubernetes.io/default-container"] = ContainerName

	mounts := []corev1.VolumeMount{
		{Name: "config", MountPath: ConfigDir, ReadOnly: true},
		{Name: "secrets", MountPath: SecretsDir, ReadOnly: true},
		{Name: "tmp", MountPath: TmpDir},
	}
	volumes := []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: HelperName(ca)},
			Items:                []corev1.KeyToPath{{Key: ConfigKey, Path: ConfigKey}},
			DefaultMode:          ptr.To(int32(0o444)),
		}}},
		secretsVolume(ca),
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("64Mi"))}}},
	}
	if p := PipePath(ca); p != "" {
		// The FIFO's directory is shared so a bitcoind sidecar can write txids into it.
		mounts = append(mounts, corev1.VolumeMount{Name: "walletnotify", MountPath: path.Dir(p)})
		volumes = append(volumes, corev1.Volume{Name: "walletnotify", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}

	ports := []corev1.ContainerPort{
		{Name: PortAPI, ContainerPort: APIPort(ca), Protocol: corev1.ProtocolTCP},
		{Name: PortMetrics, ContainerPort: config.DefaultMetricsPort, Protocol: corev1.ProtocolTCP},
	}
	if p := NotifyHTTPPort(ca); p != 0 {
		ports = append(ports, corev1.ContainerPort{Name: PortWalletHTTP, ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}
	if p := WebhookPort(ca); p != 0 {
		ports = append(ports, corev1.ContainerPort{Name: PortWebhook, ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}

	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
		// The collector paces itself by the container's memory limit rather than by doubling the
		// live heap: a rescan's listing (see the README's Rescans) then fits in what the limit
		// leaves instead of being killed at twice what it holds. The helper sets the Go limit
		// below the container's by the binary's pages it has resident (internal/memlimit), as the
		// operator does: the kernel charges those to the container too, and a heap let grow to
		// the whole limit made the kernel evict the code and read it back at every turn.
		{Name: memlimit.EnvVar, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: "limits.memory", Divisor: resource.MustParse("1")}}},
	}
	configArgs := []string{"--config", ConfigPath}
	probe := func(p string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p, Port: intstr.FromString(PortMetrics), Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds:    period,
			TimeoutSeconds:   2,
			FailureThreshold: failures,
			SuccessThreshold: 1,
		}
	}

	initializeDB := corev1.Container{
		Name:                     "initializedb",
		Image:                    image,
		ImagePullPolicy:          pullPolicy,
		Args:                     append([]string{"initializedb"}, configArgs...),
		Env:                      env,
		VolumeMounts:             mounts[:3],
		Resources:                resources,
		SecurityContext:          containerSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	helper := corev1.Container{
		Name:            ContainerName,
		Image:           image,
		ImagePullPolicy: pullPolicy,
		Args:            append([]string{"helper"}, configArgs...),
		Env:             env,
		Ports:           ports,
		VolumeMounts:    mounts,
		Resources:       resources,
		SecurityContext: containerSecurityContext(),
		// The helper's probes answer from memory and never call the node or the database.
		// Liveness fails only for a part stuck in one step (a hang); readiness means "the active
		// helper, serving its API", so a node or database outage keeps the endpoint and sends
		// can still be queued through the Service. A standby waiting for the lock is not ready.
		StartupProbe:             probe("/healthz", 5, 24),
		LivenessProbe:            probe("/healthz", 10, 3),
		ReadinessProbe:           probe("/readyz", 5, 2),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}

	d := &appsv1.Deployment{
		ObjectMeta: objectMeta(ca),
		Spec: appsv1.DeploymentSpec{
			Replicas:             ptr.To(int32(1)),
			RevisionHistoryLimit: ptr.To(int32(3)),
			Selector:             &metav1.LabelSelector{MatchLabels: SelectorLabels(ca)},
			Strategy:             appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:            HelperName(ca),
					AutomountServiceAccountToken:  ptr.To(true),
					TerminationGracePeriodSeconds: ptr.To(int64(30)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(HelperUID)),
						RunAsGroup:     ptr.To(int64(HelperUID)),
						FSGroup:        ptr.To(int64(HelperUID)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					InitContainers:    []corev1.Container{initializeDB},
					Containers:        append([]corev1.Container{helper}, sidecarContainers(ca)...),
					Volumes:           volumes,
					NodeSelector:      copyMap(h.NodeSelector),
					Tolerations:       append([]corev1.Toleration(nil), h.Tolerations...),
					Affinity:          h.Affinity.DeepCopy(),
					PriorityClassName: h.PriorityClassName,
					ImagePullSecrets:  append([]corev1.LocalObjectReference(nil), h.ImagePullSecrets...),
				},
			},
		},
	}
	return d
}

// Sidecars decodes spec.helper.sidecars. Unknown fields are errors (a misspelt field would
// otherwise vanish), and each needs a name of its own and an image.
func Sidecars(ca *v1alpha1.CryptoAsset) ([]corev1.Container, error) {
	var out []corev1.Container
	names := map[string]bool{ContainerName: true, "initializedb": true}
	for i, raw := range ca.Spec.Helper.Sidecars {
		field := fmt.Sprintf("spec.helper.sidecars[%d]", i)
		var c corev1.Container
		dec := json.NewDecoder(bytes.NewReader(raw.Raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%s is not a container spec: %v", field, err)
		}
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("%s: name is required", field)
		case names[c.Name]:
			return nil, fmt.Errorf("%s: the name %q is taken (helper and initializedb are the operator's)", field, c.Name)
		case c.Image == "":
			return nil, fmt.Errorf("%s (%s): image is required", field, c.Name)
		}
		names[c.Name] = true
		out = append(out, c)
	}
	return out, nil
}

// sidecarContainers are the sidecars, each with the walletnotify pipe's directory mounted at the
// helper's path. The reconciler refuses an asset whose sidecars do not decode before it renders
// the Deployment, so an error cannot reach here.
func sidecarContainers(ca *v1alpha1.CryptoAsset) []corev1.Container {
	sidecars, err := Sidecars(ca)
	if err != nil {
		return nil
	}
	p := PipePath(ca)
	for i := range sidecars {
		if p == "" {
			break
		}
		dir := path.Dir(p)
		if !slices.ContainsFunc(sidecars[i].VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir || m.Name == "walletnotify" }) {
			sidecars[i].VolumeMounts = append(sidecars[i].VolumeMounts, corev1.VolumeMount{Name: "walletnotify", MountPath: dir})
		}
	}
	return sidecars
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// SecretData is the content of one referenced Secret, as the hash sees it.
type SecretData struct {
	UID  string
	Data map[string][]byte
}

// ConfigHash hashes the config file and the values of every referenced Secret key, so that any
// change of either rolls the helper. Only referenced keys count: editing an unrelated key of a
// shared Secret does not restart the helper. The Secret's UID is mixed in so a deleted and
// re-created Secret with the same values still rolls the pod (its projected volume must be re-read).
func ConfigHash(ca *v1alpha1.CryptoAsset, configData []byte, secrets map[string]SecretData) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "config %d\n", len(configData))
	h.Write(configData)
	uses := ca.Spec.SecretUses()
	sort.Slice(uses, func(i, j int) bool { return uses[i].Purpose < uses[j].Purpose })
	for _, u := range uses {
		s, ok := secrets[u.Ref.Name]
		if !ok {
			return "", fmt.Errorf("secret %q (%s) was not provided", u.Ref.Name, u.Field)
		}
		v, ok := s.Data[u.Ref.Key]
		if !ok {
			return "", fmt.Errorf("secret %q has no key %q (%s)", u.Ref.Name, u.Ref.Key, u.Field)
		}
		fmt.Fprintf(h, "\nsecret %s %s %s %s %d\n", u.Purpose, u.Ref.Name, s.UID, u.Ref.Key, len(v))
		h.Write(v)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
