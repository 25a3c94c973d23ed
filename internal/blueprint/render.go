// Package blueprint renders a catalog app's kustomize base for one coop, in
// memory, and checks what it renders before anything is applied.
package blueprint

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/filters/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
)

// Image replaces an image of the base, as kustomize's images field does.
type Image struct {
	Name    string
	NewName string
	NewTag  string
}

// Target is where a parameter's value goes: fields of the objects of a kind
// and name in the base, in kustomize's replacement field path syntax.
type Target struct {
	Kind       string
	Name       string
	FieldPaths []string
}

// Input is what varies from coop to coop.
type Input struct {
	// Namespace of every rendered object.
	Namespace string
	// NamePrefix, such as "<app>-", keeps two apps apart in one namespace.
	NamePrefix string
	// Labels go on every object and into pod templates, never into selectors.
	Labels map[string]string
	// SelectorLabels go into selectors too. A workload's selector cannot
	// change once it exists: these never change for an app.
	SelectorLabels map[string]string
	// Images pin the version's image tags.
	Images []Image
	// Parameters are rendered into a ConfigMap named <prefix>parameters, and
	// from there replaced into their targets.
	Parameters map[string]string
	// Targets says where each parameter goes.
	Targets map[string][]Target
	// Provided are the base names of the Secrets the operator makes for the
	// app (DatabaseSecret, RedisSecret, GeneratedSecret). The base refers to
	// them by these names; the render refers to <NamePrefix><name>.
	Provided []string
}

// Base names of the Secrets the operator provides to an app.
const (
	// DatabaseSecret holds the app's database connection: host, port,
	// dbname, user, password, uri.
	DatabaseSecret = "database"
	// RedisSecret holds the app's Redis: host, port, password, url.
	RedisSecret = "redis"
	// GeneratedSecret holds the values of the app's Generated parameters.
	GeneratedSecret = "secrets"
)

// providedAnnotation marks the stand-ins of provided Secrets: they are
// rendered only so that kustomize prefixes the references to them, and
// never leave Render.
const providedAnnotation = "cooperator.dev/provided"

// ParametersConfigMap is the name, before the prefix, of the ConfigMap that
// holds an app's parameters.
const ParametersConfigMap = "parameters"

// Render runs kustomize on files, the app's base (its YAML resources, and a
// kustomization.yaml if it has its own), with an overlay made from in.
// Nothing touches the disk.
func Render(files map[string]string, in Input) ([]*unstructured.Unstructured, error) {
	rendered, err := render(files, in)
	if err != nil {
		return nil, err
	}
	return decodeAll(rendered)
}

// render is Render's objects as JSON, in order.
func render(files map[string]string, in Input) ([][]byte, error) {
	fs := filesys.MakeFsInMemory()
	var resources []string
	for name, content := range files {
		if name != path.Base(name) || strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("file %q: names must be plain file names", name)
		}
		if err := fs.WriteFile(path.Join("/base", name), []byte(content)); err != nil {
			return nil, err
		}
		if name != "kustomization.yaml" {
			resources = append(resources, name)
		}
	}
	sort.Strings(resources)
	if _, ok := files["kustomization.yaml"]; !ok {
		base, err := yaml.Marshal(types.Kustomization{
			TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
			Resources: resources,
		})
		if err != nil {
			return nil, err
		}
		if err := fs.WriteFile("/base/kustomization.yaml", base); err != nil {
			return nil, err
		}
	}

	k := overlay(in)
	if len(in.Provided) > 0 {
		if err := fs.WriteFile("/app/provided.yaml", providedStandIns(in.Provided)); err != nil {
			return nil, err
		}
		k.Resources = append(k.Resources, "provided.yaml")
	}
	overlay, err := yaml.Marshal(k)
	if err != nil {
		return nil, err
	}
	if err := fs.WriteFile("/app/kustomization.yaml", overlay); err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	resMap, err := krusty.MakeKustomizer(opts).Run(fs, "/app")
	if err != nil {
		return nil, fmt.Errorf("rendering: %w", err)
	}
	if err := resMap.ApplyFilter(labels.Filter{Labels: in.Labels, FsSlice: templateLabelPaths}); err != nil {
		return nil, fmt.Errorf("labelling: %w", err)
	}
	if err := resMap.ApplyFilter(labels.Filter{Labels: in.SelectorLabels, FsSlice: selectorLabelPaths}); err != nil {
		return nil, fmt.Errorf("labelling: %w", err)
	}
	var out [][]byte
	for _, r := range resMap.Resources() {
		if r.GetAnnotations()[providedAnnotation] != "" {
			continue
		}
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err)
		}
		out = append(out, data)
	}
	return out, nil
}

// decodeAll decodes rendered objects. Through JSON, so that numbers are
// int64 and float64 as the apimachinery expects.
func decodeAll(rendered [][]byte) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(rendered))
	for _, data := range rendered {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// providedStandIns are empty Secrets of the provided names. kustomize
// renames references only to objects it renders, so they stand in for the
// Secrets the operator makes itself.
func providedStandIns(names []string) []byte {
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  annotations:\n    %s: \"true\"\n", name, providedAnnotation)
	}
	return []byte(b.String())
}

func overlay(in Input) types.Kustomization {
	k := types.Kustomization{
		TypeMeta:   types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources:  []string{"../base"},
		Namespace:  in.Namespace,
		NamePrefix: in.NamePrefix,
	}
	for _, img := range in.Images {
		k.Images = append(k.Images, types.Image{Name: img.Name, NewName: img.NewName, NewTag: img.NewTag})
	}
	if len(in.Parameters) == 0 {
		return k
	}
	names := make([]string, 0, len(in.Parameters))
	for name := range in.Parameters {
		names = append(names, name)
	}
	slices.Sort(names)
	literals := make([]string, 0, len(names))
	for _, name := range names {
		literals = append(literals, name+"="+in.Parameters[name])
	}
	k.ConfigMapGenerator = []types.ConfigMapArgs{{GeneratorArgs: types.GeneratorArgs{
		Name:          ParametersConfigMap,
		KvPairSources: types.KvPairSources{LiteralSources: literals},
		Options:       &types.GeneratorOptions{DisableNameSuffixHash: true},
	}}}
	for _, name := range names {
		targets := in.Targets[name]
		if len(targets) == 0 {
			continue
		}
		r := types.ReplacementField{Replacement: types.Replacement{
			Source: &types.SourceSelector{
				ResId:     resIDConfigMap(ParametersConfigMap),
				FieldPath: "data." + name,
			},
		}}
		for _, t := range targets {
			r.Targets = append(r.Targets, &types.TargetSelector{
				Select:     &types.Selector{ResId: resID(t.Kind, t.Name)},
				FieldPaths: t.FieldPaths,
			})
		}
		k.Replacements = append(k.Replacements, r)
	}
	return k
}

// Where the coop's labels go, in the kinds an app may bring (allowedKinds):
// on every object and into pod templates, and for selector labels into
// selectors too, as kustomize's labels field puts them. That field would
// marshal its built-in field specs, for every kind there is, to YAML and
// parse them back in each render: 1.2 of the 2.9 MB a render allocated.
var (
	templateLabelPaths = types.FsSlice{
		{Path: "metadata/labels", CreateIfNotPresent: true},
		labelPath("Deployment", "spec/template/metadata/labels", true),
		labelPath("StatefulSet", "spec/template/metadata/labels", true),
		labelPath("Job", "spec/template/metadata/labels", true),
		labelPath("CronJob", "spec/jobTemplate/metadata/labels", true),
		labelPath("CronJob", "spec/jobTemplate/spec/template/metadata/labels", true),
	}
	selectorLabelPaths = slices.Concat(templateLabelPaths, types.FsSlice{
		labelPath("Service", "spec/selector", true),
		labelPath("Deployment", "spec/selector/matchLabels", true),
		labelPath("StatefulSet", "spec/selector/matchLabels", true),
		labelPath("StatefulSet", "spec/volumeClaimTemplates[]/metadata/labels", true),
		// A Job's selector is generated unless the Job sets its own.
		labelPath("Job", "spec/selector/matchLabels", false),
		labelPath("CronJob", "spec/jobTemplate/spec/selector/matchLabels", false),
	}, podSelectorPaths("Deployment"), podSelectorPaths("StatefulSet"))
)

func labelPath(kind, path string, create bool) types.FieldSpec {
	return types.FieldSpec{Gvk: resid.Gvk{Kind: kind}, Path: path, CreateIfNotPresent: create}
}

// podSelectorPaths are the selectors in a workload's pods that pick pods
// of the same app (affinity and spreading), where they already exist.
func podSelectorPaths(kind string) types.FsSlice {
	var out types.FsSlice
	for _, p := range []string{
		"affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
		"affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
		"affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
		"affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
		"topologySpreadConstraints/labelSelector/matchLabels",
	} {
		out = append(out, labelPath(kind, "spec/template/spec/"+p, false))
	}
	return out
}

func resID(kind, name string) resid.ResId {
	return resid.ResId{Gvk: resid.Gvk{Kind: kind}, Name: name}
}

func resIDConfigMap(name string) resid.ResId {
	return resid.ResId{Gvk: resid.Gvk{Version: "v1", Kind: "ConfigMap"}, Name: name}
}
