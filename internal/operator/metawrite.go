package operator

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// acceptMetadata asks the API server to answer a write with the object's metadata alone, as
// client-go's metadata client asks for reads.
const acceptMetadata = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

// metadataWriter writes objects as the manager's client does (the same REST clients, protobuf
// for built-in kinds), but reads back only the written object's metadata: what the API server
// assigned (UID, resourceVersion, generation, creation time).
//
// The client decodes the whole written object into the one it was given. The reconciler keeps
// nothing of a created child but its UID and version (it renders the child afresh each time),
// and a created Deployment comes back with every default of its pod template filled in:
// decoding the children created while converging 1,000 assets was 149 MB of the operator's
// 464 MB of allocations (pprof alloc_space). Nor does it read the CryptoAsset whose status it
// patched: decoding those answers (JSON, a custom resource) was 49 MB of the 436 MB left.
type metadataWriter struct {
	scheme     *runtime.Scheme
	codecs     serializer.CodecFactory
	params     runtime.ParameterCodec
	mapper     meta.RESTMapper
	cfg        *rest.Config
	httpClient *http.Client
	clients    sync.Map // schema.GroupVersionKind → rest.Interface
}

func newMetadataWriter(scheme *runtime.Scheme, mapper meta.RESTMapper, cfg *rest.Config, httpClient *http.Client) *metadataWriter {
	return &metadataWriter{
		scheme:     scheme,
		codecs:     serializer.NewCodecFactory(scheme),
		params:     runtime.NewParameterCodec(scheme),
		mapper:     mapper,
		cfg:        cfg,
		httpClient: httpClient,
	}
}

// Create creates obj and sets the metadata the API server assigned to it. The rest of obj is
// left as it was sent, without the server's defaults.
func (m *metadataWriter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	req, gvk, err := m.request(obj, rest.Interface.Post)
	if err != nil {
		return err
	}
	createOpts := &client.CreateOptions{}
	createOpts.ApplyOptions(opts)
	created, err := metadataAnswer(req.Body(obj).VersionedParams(createOpts.AsCreateOptions(), m.params).Do(ctx), "creating", gvk, obj)
	if err != nil {
		return err
	}
	obj.SetName(created.Name)
	obj.SetUID(created.UID)
	obj.SetResourceVersion(created.ResourceVersion)
	obj.SetGeneration(created.Generation)
	obj.SetCreationTimestamp(created.CreationTimestamp)
	return nil
}

// PatchStatus patches obj's status subresource and sets the resourceVersion the API server
// answered with. The rest of obj is left as it was: its status is the one the patch was made from.
func (m *metadataWriter) PatchStatus(ctx context.Context, obj client.Object, patch client.Patch) error {
	data, err := patch.Data(obj)
	if err != nil {
		return fmt.Errorf("computing the status patch of %s: %w", obj.GetName(), err)
	}
	req, gvk, err := m.request(obj, func(rc rest.Interface) *rest.Request { return rc.Patch(patch.Type()) })
	if err != nil {
		return err
	}
	patched, err := metadataAnswer(req.Name(obj.GetName()).SubResource("status").Body(data).Do(ctx), "patching the status of", gvk, obj)
	if err != nil {
		return err
	}
	obj.SetResourceVersion(patched.ResourceVersion)
	obj.SetGeneration(patched.Generation)
	return nil
}

// request starts a request of the verb on obj's resource, asking for the answer as metadata alone.
func (m *metadataWriter) request(obj client.Object, verb func(rest.Interface) *rest.Request) (*rest.Request, schema.GroupVersionKind, error) {
	gvk, err := apiutil.GVKForObject(obj, m.scheme)
	if err != nil {
		return nil, gvk, err
	}
	mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, gvk, fmt.Errorf("finding the resource of %s: %w", gvk, err)
	}
	rc, err := m.client(gvk)
	if err != nil {
		return nil, gvk, err
	}
	return verb(rc).
		NamespaceIfScoped(obj.GetNamespace(), mapping.Scope.Name() == meta.RESTScopeNameNamespace).
		Resource(mapping.Resource.Resource).
		SetHeader("Accept", acceptMetadata), gvk, nil
}

// metadataAnswer decodes the metadata the API server answered a write of obj with.
func metadataAnswer(res rest.Result, doing string, gvk schema.GroupVersionKind, obj client.Object) (*metav1.PartialObjectMetadata, error) {
	raw, err := res.Raw()
	if err != nil {
		// A refusal is the API server's Status, decoded into the usual error (AlreadyExists,
		// Conflict, ...).
		return nil, err
	}
	var answer metav1.PartialObjectMetadata
	if _, _, err := metainternalversionscheme.Codecs.UniversalDeserializer().Decode(raw, nil, &answer); err != nil {
		return nil, fmt.Errorf("reading the metadata of %s %s %s: %w", doing, gvk.Kind, obj.GetName(), err)
	}
	if answer.UID == "" || answer.ResourceVersion == "" {
		return nil, fmt.Errorf("the API server's answer to %s %s %s has no UID or resourceVersion", doing, gvk.Kind, obj.GetName())
	}
	return &answer, nil
}

// client is the REST client for gvk, made as the manager's client makes it.
func (m *metadataWriter) client(gvk schema.GroupVersionKind) (rest.Interface, error) {
	if c, ok := m.clients.Load(gvk); ok {
		return c.(rest.Interface), nil
	}
	c, err := apiutil.RESTClientForGVK(gvk, false, false, m.cfg, m.codecs, m.httpClient)
	if err != nil {
		return nil, fmt.Errorf("making a REST client for %s: %w", gvk, err)
	}
	c2, _ := m.clients.LoadOrStore(gvk, c)
	return c2.(rest.Interface), nil
}
