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

// metadataCreator creates objects as the manager's client does (the same REST clients, protobuf
// for built-in kinds), but reads back only what the API server assigned in the created object's
// metadata: its UID, resourceVersion, generation and creation time.
//
// The client decodes the whole created object into the one it was given. The reconciler keeps
// nothing of a created child but its UID and version (it renders the child afresh each time),
// and a created Deployment comes back with every default of its pod template filled in:
// decoding the children created while converging 1,000 assets was 149 MB of the operator's
// 464 MB of allocations (pprof alloc_space).
type metadataCreator struct {
	scheme     *runtime.Scheme
	codecs     serializer.CodecFactory
	params     runtime.ParameterCodec
	mapper     meta.RESTMapper
	cfg        *rest.Config
	httpClient *http.Client
	clients    sync.Map // schema.GroupVersionKind → rest.Interface
}

func newMetadataCreator(scheme *runtime.Scheme, mapper meta.RESTMapper, cfg *rest.Config, httpClient *http.Client) *metadataCreator {
	return &metadataCreator{
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
func (m *metadataCreator) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	gvk, err := apiutil.GVKForObject(obj, m.scheme)
	if err != nil {
		return err
	}
	mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("finding the resource of %s: %w", gvk, err)
	}
	rc, err := m.client(gvk)
	if err != nil {
		return err
	}
	createOpts := &client.CreateOptions{}
	createOpts.ApplyOptions(opts)
	raw, err := rc.Post().
		NamespaceIfScoped(obj.GetNamespace(), mapping.Scope.Name() == meta.RESTScopeNameNamespace).
		Resource(mapping.Resource.Resource).
		SetHeader("Accept", acceptMetadata).
		Body(obj).
		VersionedParams(createOpts.AsCreateOptions(), m.params).
		Do(ctx).
		Raw()
	if err != nil {
		// A refusal is the API server's Status, decoded into the usual error (AlreadyExists, ...).
		return err
	}
	var created metav1.PartialObjectMetadata
	if _, _, err := metainternalversionscheme.Codecs.UniversalDeserializer().Decode(raw, nil, &created); err != nil {
		return fmt.Errorf("reading the metadata of the created %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	if created.UID == "" || created.ResourceVersion == "" {
		return fmt.Errorf("the API server's answer to creating %s %s has no UID or resourceVersion", gvk.Kind, obj.GetName())
	}
	obj.SetName(created.Name)
	obj.SetUID(created.UID)
	obj.SetResourceVersion(created.ResourceVersion)
	obj.SetGeneration(created.Generation)
	obj.SetCreationTimestamp(created.CreationTimestamp)
	return nil
}

// client is the REST client for gvk, made as the manager's client makes it.
func (m *metadataCreator) client(gvk schema.GroupVersionKind) (rest.Interface, error) {
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
