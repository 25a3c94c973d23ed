package blueprint

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// Example values a blueprint is rendered with when it is checked on its
// own, before any coop picks it.
const (
	exampleNamespace = "coop-example"
	exampleHostname  = "app.example.coop"
)

// Files are the blueprint's base, by file name.
func Files(bp *v1alpha1.Blueprint) map[string]string {
	files := make(map[string]string, len(bp.Spec.Resources))
	for _, f := range bp.Spec.Resources {
		files[f.Name] = f.Content
	}
	return files
}

// InputFor is the overlay of one version of bp for one app of a coop.
// Generated parameters are not rendered here: their values are secrets, and
// go to the app's Secret.
func InputFor(bp *v1alpha1.Blueprint, version, namespace, app, hostname string, labels map[string]string) (Input, error) {
	i := slices.IndexFunc(bp.Spec.Versions, func(v v1alpha1.BlueprintVersion) bool { return v.Version == version })
	if i < 0 {
		return Input{}, fmt.Errorf("version %q is not offered", version)
	}
	in := Input{
		Namespace:  namespace,
		NamePrefix: app + "-",
		Labels:     labels,
		// Two apps of one Blueprint in a coop select their own pods.
		SelectorLabels: map[string]string{v1alpha1.AppLabel: app},
		Parameters:     map[string]string{},
		Targets:        map[string][]Target{},
	}
	in.Provided = Provided(bp)
	for _, img := range bp.Spec.Versions[i].Images {
		in.Images = append(in.Images, Image{Name: img.Name, NewName: img.NewName, NewTag: img.Tag})
	}
	for _, p := range bp.Spec.Parameters {
		var value string
		switch p.Source {
		case v1alpha1.ParameterHostname:
			value = hostname
		case v1alpha1.ParameterURL:
			value = "https://" + hostname
		case v1alpha1.ParameterValue:
			value = p.Value
		default:
			continue
		}
		in.Parameters[p.Name] = value
		for _, t := range p.Targets {
			in.Targets[p.Name] = append(in.Targets[p.Name], Target{Kind: t.Kind, Name: t.Name, FieldPaths: t.FieldPaths})
		}
	}
	return in, nil
}

// Provided are the base names of the Secrets the operator makes for an app
// of bp, from what it needs.
func Provided(bp *v1alpha1.Blueprint) []string {
	var names []string
	if bp.Spec.Needs.Database {
		names = append(names, DatabaseSecret)
	}
	if bp.Spec.Needs.Redis {
		names = append(names, RedisSecret)
	}
	if slices.ContainsFunc(bp.Spec.Parameters, func(p v1alpha1.BlueprintParameter) bool { return p.Source == v1alpha1.ParameterGenerated }) {
		names = append(names, GeneratedSecret)
	}
	return names
}

// unlimited is the budget of a blueprint checked on its own: whether it
// fits a coop's plan is checked for that coop.
var unlimited = Budget{
	CPU: resource.MustParse("1M"), Memory: resource.MustParse("1Pi"),
	DefaultCPU: resource.MustParse("500m"), DefaultMemory: resource.MustParse("512Mi"),
}

// Validate renders every version of bp with example values and checks the
// result; it returns what is wrong, or nothing.
func Validate(bp *v1alpha1.Blueprint) []string {
	var problems []string
	files := Files(bp)
	for _, v := range bp.Spec.Versions {
		in, err := InputFor(bp, v.Version, exampleNamespace, "app", exampleHostname, nil)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		objs, err := Render(files, in)
		if err != nil {
			problems = append(problems, fmt.Sprintf("version %s: %v", v.Version, err))
			continue
		}
		violations, err := Check(objs, unlimited)
		if err != nil {
			problems = append(problems, fmt.Sprintf("version %s: %v", v.Version, err))
			continue
		}
		for _, viol := range violations {
			problems = append(problems, fmt.Sprintf("version %s: %s", v.Version, viol))
		}
		problems = append(problems, references(bp, v.Version, objs)...)
	}
	return slices.Compact(problems)
}

// references checks that what the spec names exists in the rendered base.
func references(bp *v1alpha1.Blueprint, version string, objs []*unstructured.Unstructured) []string {
	has := func(kind, name string) bool {
		return slices.ContainsFunc(objs, func(u *unstructured.Unstructured) bool {
			return u.GetKind() == kind && u.GetName() == "app-"+name
		})
	}
	var problems []string
	if e := bp.Spec.Expose; e != nil && !has("Service", e.Service) {
		problems = append(problems, fmt.Sprintf("version %s: spec.expose.service: no Service %q in the base", version, e.Service))
	}
	for i, d := range bp.Spec.Data {
		if !has("PersistentVolumeClaim", d.Claim) {
			problems = append(problems, fmt.Sprintf("version %s: spec.data[%d].claim: no PersistentVolumeClaim %q in the base", version, i, d.Claim))
		}
	}
	if m := bp.Spec.Migration; m != nil && !has("Deployment", m.Workload) && !has("StatefulSet", m.Workload) {
		problems = append(problems, fmt.Sprintf("version %s: spec.migration.workload: no Deployment or StatefulSet %q in the base", version, m.Workload))
	}
	return problems
}
