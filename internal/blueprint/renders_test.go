package blueprint

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// coopInput is input() for another coop: its own namespace, labels and
// hostname.
func coopInput(name string) Input {
	in := input()
	in.Namespace = "coop-" + name
	in.Labels = map[string]string{"cooperator.dev/app": "shop", "cooperator.dev/cooperative": name}
	in.Parameters = map[string]string{"url": "https://shop." + name + ".example.coop"}
	return in
}

func TestRendersRunKustomizeOncePerAppAcrossCoops(t *testing.T) {
	var r Renders
	files := fixture(t)
	for _, name := range []string{"bakers", "potters", "bakers", "2mains"} {
		in := coopInput(name)
		want, err := Render(files, in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Render(files, in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("coop %s: the render differs from Render's:\n%v\nwant\n%v", name, got, want)
		}
		// The caller owns what it gets: the next render is untouched.
		got[0].SetName("changed")
	}
	if r.runs != 1 {
		t.Errorf("kustomize ran %d times for one app of three coops, want 1", r.runs)
	}

	files["service.yaml"] += "\n"
	if _, err := r.Render(files, coopInput("bakers")); err != nil {
		t.Fatal(err)
	}
	in := coopInput("bakers")
	in.Images = []Image{{Name: "example.org/web", NewTag: "1.5.0"}}
	if _, err := r.Render(files, in); err != nil {
		t.Fatal(err)
	}
	if r.runs != 3 {
		t.Errorf("kustomize ran %d times after a file and then an image changed, want 3", r.runs)
	}
}

func TestRendersRunKustomizeOnceForCoopsThatAskAtOnce(t *testing.T) {
	var r Renders
	r.Bound(2)
	files := fixture(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			in := coopInput(fmt.Sprintf("coop%d", i))
			<-start
			got, err := r.Render(files, in)
			if err != nil {
				errs <- err
				return
			}
			want, err := Render(files, in)
			if err != nil {
				errs <- err
				return
			}
			if !reflect.DeepEqual(got, want) {
				errs <- fmt.Errorf("coop%d: the render differs from Render's", i)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r.runs != 1 {
		t.Errorf("kustomize ran %d times for 16 coops that asked at once, want 1", r.runs)
	}
}

// Where kustomize looks at a value (its type, a name it matches, a hash of
// it), the render is still Render's: shared when the placeholders keep it
// so, for each coop alone otherwise.
func TestRendersMatchRenderWhereKustomizeLooksAtValues(t *testing.T) {
	// An Ingress whose backend is a parameter.
	withIngress := fixture(t, func(f map[string]string) {
		f["ingress.yaml"] = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: site\nspec:\n  defaultBackend:\n    service: {name: unset, port: {number: 80}}\n"
	})
	backendTarget := []Target{{Kind: "Ingress", Name: "site", FieldPaths: []string{"spec.defaultBackend.service.name"}}}
	cases := map[string]struct {
		files map[string]string
		in    func(name string) Input
		// runs for the two coops.
		runs int
	}{
		"values that YAML reads as numbers or booleans": {
			files: fixture(t),
			in: func(name string) Input {
				in := coopInput(name)
				in.Labels["example.org/flag"] = map[string]string{"bakers": "true", "potters": "no"}[name]
				in.Parameters["url"] = map[string]string{"bakers": "1e5", "potters": "0x1F"}[name]
				return in
			},
			runs: 2,
		},
		"a value with spaces and quotes": {
			files: fixture(t),
			in: func(name string) Input {
				in := coopInput(name)
				in.Parameters["url"] = `"the ` + name + `"`
				return in
			},
			runs: 2,
		},
		"a base with its own kustomization": {
			files: fixture(t, func(f map[string]string) {
				f["kustomization.yaml"] = "resources: [web.yaml, service.yaml]\n"
			}),
			in:   coopInput,
			runs: 2,
		},
		"a base that holds the placeholders' prefix": {
			files: fixture(t, replace("web.yaml", "example.org/web:latest", "example.org/"+placeholderPrefix+"web:latest")),
			in:    coopInput,
			runs:  2,
		},
		"a base with kustomize's own hash annotation": {
			files: fixture(t, func(f map[string]string) {
				f["settings.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  annotations:\n    internal.config.kubernetes.io/needsHashSuffix: enabled\ndata:\n  url: x\n"
			}),
			in: func(name string) Input {
				in := coopInput(name)
				in.Targets["url"] = append(in.Targets["url"], Target{Kind: "ConfigMap", Name: "settings", FieldPaths: []string{"data.url"}})
				return in
			},
			runs: 2,
		},
		// kustomize renames references to the base's objects after the
		// replacements: these values stay as they are, the rest is shared.
		"a parameter that names an object of the base": {
			files: withIngress,
			in: func(name string) Input {
				in := coopInput(name)
				in.Parameters["backend"] = "web"
				in.Targets["backend"] = backendTarget
				return in
			},
			runs: 1,
		},
		"a parameter that names an object of the base with its prefix": {
			files: withIngress,
			in: func(name string) Input {
				in := coopInput(name)
				in.Parameters["backend"] = in.NamePrefix + "web"
				in.Parameters["url"] = in.NamePrefix + name + ".example.coop"
				in.Targets["backend"] = backendTarget
				return in
			},
			runs: 1,
		},
		"a parameter that names a provided Secret": {
			files: fixture(t, replace("web.yaml", `        env:
`, `        env:
        - name: DATABASE_URL
          valueFrom: {secretKeyRef: {name: unset, key: uri}}
`)),
			in: func(name string) Input {
				in := coopInput(name)
				in.Provided = []string{DatabaseSecret}
				in.Parameters["secret"] = DatabaseSecret
				in.Targets["secret"] = []Target{{Kind: "Deployment", Name: "web", FieldPaths: []string{"spec.template.spec.containers.[name=web].env.[name=DATABASE_URL].valueFrom.secretKeyRef.name"}}}
				return in
			},
			runs: 1,
		},
		// kustomize matches a subject's namespace with the namespace of the
		// ServiceAccount it names: equal values share a placeholder.
		"a parameter equal to the namespace": {
			files: fixture(t, func(f map[string]string) {
				f["rbac.yaml"] = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: bot\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: bot\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: view}\nsubjects:\n- kind: ServiceAccount\n  name: bot\n  namespace: unset\n"
			}),
			in: func(name string) Input {
				in := coopInput(name)
				in.Parameters["namespace"] = "coop-" + name
				in.Targets["namespace"] = []Target{{Kind: "RoleBinding", Name: "bot", FieldPaths: []string{"subjects.0.namespace"}}}
				return in
			},
			runs: 1,
		},
		"a parameter that goes into a name": {
			files: fixture(t),
			in: func(name string) Input {
				in := coopInput(name)
				in.Parameters["site"] = "site-" + name
				in.Targets["site"] = []Target{{Kind: "Service", Name: "web", FieldPaths: []string{"metadata.name"}}}
				return in
			},
			// The shared render, then one for each coop.
			runs: 3,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var r Renders
			for _, coop := range []string{"bakers", "potters"} {
				want, err := Render(c.files, c.in(coop))
				if err != nil {
					t.Fatal(err)
				}
				got, err := r.Render(c.files, c.in(coop))
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("coop %s: the render differs from Render's:\n%v\nwant\n%v", coop, got, want)
				}
			}
			if r.runs != c.runs {
				t.Errorf("kustomize ran %d times for two coops, want %d", r.runs, c.runs)
			}
		})
	}
}

func TestRendersKeepTheRendersUsedLast(t *testing.T) {
	var r Renders
	files := fixture(t)
	for i := range maxKept + 1 {
		files["service.yaml"] += "\n"
		if _, err := r.Render(files, coopInput("bakers")); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			// The first, used again: the second is now the one used longest ago.
			if _, err := r.Render(fixture(t, func(f map[string]string) { f["service.yaml"] += "\n" }), coopInput("potters")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(r.kept) != maxKept {
		t.Fatalf("%d renders kept, want %d", len(r.kept), maxKept)
	}
	runs := r.runs
	if _, err := r.Render(fixture(t, func(f map[string]string) { f["service.yaml"] += "\n" }), coopInput("weavers")); err != nil {
		t.Fatal(err)
	}
	if r.runs != runs {
		t.Error("the render used again after it was made was forgotten")
	}
	if _, err := r.Render(fixture(t, func(f map[string]string) { f["service.yaml"] += "\n\n" }), coopInput("weavers")); err != nil {
		t.Fatal(err)
	}
	if r.runs != runs+1 {
		t.Error("the render used longest ago was kept")
	}
}

func TestRendersBoundWaitsForAFreeSlot(t *testing.T) {
	var r Renders
	r.Bound(1)
	files := fixture(t)
	// Another render holds the only slot.
	r.slots <- struct{}{}
	done := make(chan error, 1)
	go func() {
		_, err := r.Render(files, input())
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a render ran while the only slot was taken (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	<-r.slots
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the render did not run once the slot was free")
	}
	if len(r.slots) != 0 {
		t.Errorf("%d slots still taken after the render", len(r.slots))
	}
	// A render from memory takes no slot.
	r.slots <- struct{}{}
	if _, err := r.Render(files, input()); err != nil {
		t.Fatal(err)
	}
}

// Every app of the shipped catalog, for coops of different names: one
// kustomize run per version, and each coop's render is Render's.
func TestRendersMatchRenderForTheCatalog(t *testing.T) {
	paths, err := filepath.Glob("../../config/catalog/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r Renders
	versions := 0
	for _, path := range paths {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bp := &v1alpha1.Blueprint{}
		if err := yaml.UnmarshalStrict(data, bp); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, v := range bp.Spec.Versions {
			versions++
			for _, coop := range []string{"bakers", "velo-couriers", "a1"} {
				labels := map[string]string{"app.kubernetes.io/managed-by": "cooperator", "cooperator.dev/cooperative": coop, v1alpha1.AppLabel: bp.Name}
				in, err := InputFor(bp, v.Version, "coop-"+coop, bp.Name, bp.Name+"."+coop+".coops.example", labels)
				if err != nil {
					t.Fatal(err)
				}
				want, err := Render(Files(bp), in)
				if err != nil {
					t.Fatalf("%s %s: %v", bp.Name, v.Version, err)
				}
				got, err := r.Render(Files(bp), in)
				if err != nil {
					t.Fatalf("%s %s: %v", bp.Name, v.Version, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s %s, coop %s: the render differs from Render's", bp.Name, v.Version, coop)
				}
			}
		}
	}
	if versions == 0 {
		t.Fatal("no Blueprint in the catalog")
	}
	if r.runs != versions {
		t.Errorf("kustomize ran %d times for %d versions of the catalog's apps, each for three coops; want one run a version", r.runs, versions)
	}
}

// BenchmarkRendersOfManyCoops is one app's render for coop after coop, as a
// new process's first pass over every coop: BenchmarkRender's kustomize run
// is paid once.
func BenchmarkRendersOfManyCoops(b *testing.B) {
	files := readFiles(b, "testdata", "web.yaml", "service.yaml")
	var r Renders
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		in := coopInput(fmt.Sprintf("coop%d", i))
		in.SelectorLabels = map[string]string{"cooperator.dev/app-instance": "shop"}
		i++
		objs, err := r.Render(files, in)
		if err != nil || len(objs) != 3 {
			b.Fatalf("rendered %d objects: %v", len(objs), err)
		}
	}
}
