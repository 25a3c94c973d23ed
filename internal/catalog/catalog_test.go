package catalog

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/blueprint"
	"cooperator.dev/cooperator/internal/specs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	catalogDir = "../../config/catalog"
	plansFile  = "../../config/samples/plans.yaml"
)

// The Redis the operator runs for an app that needs one counts against the
// coop's quota as well.
var redisCPU, redisMemory = resource.MustParse("100m"), resource.MustParse("128Mi")

var coop = &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "bakers"}}

func loadCatalog(t *testing.T) []*v1alpha1.Blueprint {
	t.Helper()
	bps, err := Load(catalogDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(bps) == 0 {
		t.Fatal("the catalog is empty")
	}
	return bps
}

// render renders one version of bp as the app named after the Blueprint
// in the sample coop.
func render(t *testing.T, bp *v1alpha1.Blueprint, version string) []*unstructured.Unstructured {
	t.Helper()
	app := bp.Name
	in, err := blueprint.InputFor(bp, version, coop.NamespaceName(), app, app+".bakers.coops.example", specs.AppLabels(coop, app))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := blueprint.Render(blueprint.Files(bp), in)
	if err != nil {
		t.Fatalf("%s %s: %v", bp.Name, version, err)
	}
	return objs
}

func standardPlan(t *testing.T) *v1alpha1.Plan {
	t.Helper()
	data, err := os.ReadFile(plansFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		plan := &v1alpha1.Plan{}
		if err := yaml.UnmarshalStrict([]byte(doc), plan); err != nil {
			t.Fatal(err)
		}
		if plan.Name == "standard" {
			return plan
		}
	}
	t.Fatal("no standard plan in the samples")
	return nil
}

// budget is what the plan's quota leaves to apps' pods once the operator's
// Redis for as many apps (redises) is counted.
func budget(plan *v1alpha1.Plan, redises int) blueprint.Budget {
	defaults := plan.Spec.EffectiveContainerDefaults()
	b := blueprint.Budget{
		CPU: plan.Spec.Quota.CPU.DeepCopy(), Memory: plan.Spec.Quota.Memory.DeepCopy(),
		DefaultCPU: *defaults.Limits.CPU, DefaultMemory: *defaults.Limits.Memory,
	}
	for range redises {
		b.CPU.Sub(redisCPU)
		b.Memory.Sub(redisMemory)
	}
	return b
}

func redises(bps ...*v1alpha1.Blueprint) int {
	n := 0
	for _, bp := range bps {
		if bp.Spec.Needs.Redis {
			n++
		}
	}
	return n
}

// withMigration adds the Job an upgrade runs while the old version serves.
func withMigration(t *testing.T, bp *v1alpha1.Blueprint, version string, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	if bp.Spec.Migration == nil {
		return objs
	}
	job, err := blueprint.MigrationJob(objs, bp.Spec.Migration, bp.Name+"-", bp.Name, version)
	if err != nil {
		t.Fatalf("%s %s: %v", bp.Name, version, err)
	}
	return append(slices.Clone(objs), job)
}

func TestDecodeIsStrict(t *testing.T) {
	valid := `apiVersion: cooperator.dev/v1alpha1
kind: Blueprint
metadata: {name: web}
spec:
  displayName: Web
  resources: [{name: a.yaml, content: "x: y"}]
  versions: [{version: "1", images: [{name: web, tag: "1"}]}]
`
	if _, err := Decode([]byte(valid)); err != nil {
		t.Fatalf("a valid Blueprint fails: %v", err)
	}
	cases := map[string]string{
		"unknown field":   strings.Replace(valid, "  displayName: Web", "  displayName: Web\n  replicas: 2", 1),
		"misspelt field":  strings.Replace(valid, "displayName", "displayname", 1),
		"duplicate field": strings.Replace(valid, "  displayName: Web", "  displayName: Web\n  displayName: Again", 1),
		"another kind":    strings.Replace(valid, "kind: Blueprint", "kind: Plan", 1),
	}
	for name, doc := range cases {
		if _, err := Decode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

func TestKustomizationListsEveryBlueprint(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(catalogDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(catalogDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if name := filepath.Base(f); name != "kustomization.yaml" {
			want = append(want, name)
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml lists %v, the catalog has %v", got, want)
	}
	for _, bp := range loadCatalog(t) {
		if !slices.Contains(want, bp.Name+".yaml") {
			t.Errorf("Blueprint %s is not in a file named after it", bp.Name)
		}
	}
}

// kubectl apply -k config/catalog installs exactly the catalog's Blueprints.
func TestKustomizeBuildsTheCatalog(t *testing.T) {
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), catalogDir)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, r := range resMap.Resources() {
		got = append(got, r.GetKind()+"/"+r.GetName())
	}
	for _, bp := range loadCatalog(t) {
		want = append(want, "Blueprint/"+bp.Name)
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomize builds %v, want %v", got, want)
	}
}

func TestEveryBlueprintOffersTwoVersions(t *testing.T) {
	for _, bp := range loadCatalog(t) {
		if len(bp.Spec.Versions) < 2 {
			t.Errorf("%s offers %d versions, want two to upgrade between", bp.Name, len(bp.Spec.Versions))
		}
	}
}

func TestBlueprintsPassTheirChecks(t *testing.T) {
	for _, bp := range loadCatalog(t) {
		for _, problem := range blueprint.Validate(bp) {
			t.Errorf("%s: %s", bp.Name, problem)
		}
	}
}

var notFileChar = regexp.MustCompile(`[^a-z0-9.-]+`)

func TestRendersMatchGoldenFiles(t *testing.T) {
	for _, bp := range loadCatalog(t) {
		for _, v := range bp.Spec.Versions {
			var b bytes.Buffer
			for _, o := range render(t, bp, v.Version) {
				data, err := yaml.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				b.WriteString("---\n")
				b.Write(data)
			}
			golden := filepath.Join("testdata", bp.Name+"-"+notFileChar.ReplaceAllString(strings.ToLower(v.Version), "-")+".yaml")
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/catalog -update)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("%s %s renders differently from %s; review, then rerun with -update", bp.Name, v.Version, golden)
			}
		}
	}
}

func TestParametersReachTheirTargets(t *testing.T) {
	for _, bp := range loadCatalog(t) {
		for _, v := range bp.Spec.Versions {
			for _, o := range render(t, bp, v.Version) {
				data, _ := yaml.Marshal(o.Object)
				if bytes.Contains(data, []byte("set-by-parameter")) {
					t.Errorf("%s %s: %s %s keeps a placeholder no parameter replaced", bp.Name, v.Version, o.GetKind(), o.GetName())
				}
			}
		}
	}
}

func TestEachAppFitsTheStandardPlan(t *testing.T) {
	plan := standardPlan(t)
	for _, bp := range loadCatalog(t) {
		for _, v := range bp.Spec.Versions {
			objs := withMigration(t, bp, v.Version, render(t, bp, v.Version))
			violations, err := blueprint.Check(objs, budget(plan, redises(bp)))
			if err != nil {
				t.Fatal(err)
			}
			for _, viol := range violations {
				t.Errorf("%s %s, while migrating: %s", bp.Name, v.Version, viol)
			}
		}
	}
}

// A coop on the standard plan can run the whole catalog, and upgrade one
// app at a time.
func TestTheWholeCatalogFitsOneStandardCoop(t *testing.T) {
	plan := standardPlan(t)
	bps := loadCatalog(t)
	var all []*unstructured.Unstructured
	for _, bp := range bps {
		all = append(all, render(t, bp, bp.Spec.Versions[len(bp.Spec.Versions)-1].Version)...)
	}
	for _, bp := range bps {
		last := bp.Spec.Versions[len(bp.Spec.Versions)-1].Version
		objs := withMigration(t, bp, last, all)
		violations, err := blueprint.Check(objs, budget(plan, redises(bps...)))
		if err != nil {
			t.Fatal(err)
		}
		for _, viol := range violations {
			t.Errorf("all apps, while %s migrates: %s", bp.Name, viol)
		}
	}
}

func podSpec(o *unstructured.Unstructured) map[string]any {
	var path []string
	switch o.GetKind() {
	case "Deployment", "StatefulSet", "Job":
		path = []string{"spec", "template", "spec"}
	case "CronJob":
		path = []string{"spec", "jobTemplate", "spec", "template", "spec"}
	default:
		return nil
	}
	spec, _, _ := unstructured.NestedMap(o.Object, path...)
	return spec
}

func containers(spec map[string]any) []map[string]any {
	var out []map[string]any
	for _, field := range []string{"initContainers", "containers"} {
		list, _, _ := unstructured.NestedSlice(spec, field)
		for _, c := range list {
			out = append(out, c.(map[string]any))
		}
	}
	return out
}

// Every image of every render carries a tag or digest, set by the version
// or pinned in the base, and no moving "latest".
func TestImagesArePinned(t *testing.T) {
	for _, bp := range loadCatalog(t) {
		for _, v := range bp.Spec.Versions {
			for _, o := range render(t, bp, v.Version) {
				for _, c := range containers(podSpec(o)) {
					image, _ := c["image"].(string)
					last := image[strings.LastIndex(image, "/")+1:]
					pinned := strings.Contains(image, "@sha256:") || strings.Contains(last, ":") && !strings.HasSuffix(last, ":latest")
					if !pinned {
						t.Errorf("%s %s: container %s runs %q, not a pinned tag", bp.Name, v.Version, c["name"], image)
					}
				}
			}
		}
	}
}

func TestEveryContainerSetsLimits(t *testing.T) {
	for _, bp := range loadCatalog(t) {
		for _, o := range render(t, bp, bp.Spec.Versions[0].Version) {
			for _, c := range containers(podSpec(o)) {
				limits, _, _ := unstructured.NestedStringMap(c, "resources", "limits")
				if limits["cpu"] == "" || limits["memory"] == "" {
					t.Errorf("%s: %s %s container %s has no CPU or memory limit", bp.Name, o.GetKind(), o.GetName(), c["name"])
				}
			}
		}
	}
}

// The base may refer only to the Secrets the operator provides, by their
// base names and with their keys, and to the optional "settings".
func TestSecretReferencesKeepTheContract(t *testing.T) {
	for _, bp := range loadCatalog(t) {
		keys := map[string][]string{}
		if bp.Spec.Needs.Database {
			keys[blueprint.DatabaseSecret] = []string{"host", "port", "dbname", "user", "password", "uri"}
		}
		if bp.Spec.Needs.Redis {
			keys[blueprint.RedisSecret] = []string{"host", "port", "password", "url"}
		}
		for _, p := range bp.Spec.Parameters {
			if p.Source == v1alpha1.ParameterGenerated {
				keys[blueprint.GeneratedSecret] = append(keys[blueprint.GeneratedSecret], p.Name)
			}
		}
		base := func(name string) string { return strings.TrimPrefix(name, bp.Name+"-") }
		for _, o := range render(t, bp, bp.Spec.Versions[0].Version) {
			id := bp.Name + ": " + o.GetKind() + " " + o.GetName()
			for _, c := range containers(podSpec(o)) {
				env, _, _ := unstructured.NestedSlice(c, "env")
				for _, e := range env {
					ref, ok, _ := unstructured.NestedMap(e.(map[string]any), "valueFrom", "secretKeyRef")
					if !ok {
						continue
					}
					name, key := base(ref["name"].(string)), ref["key"].(string)
					if !slices.Contains(keys[name], key) {
						t.Errorf("%s: refers to key %q of Secret %q, which the operator does not provide", id, key, name)
					}
				}
				from, _, _ := unstructured.NestedSlice(c, "envFrom")
				for _, f := range from {
					ref, ok, _ := unstructured.NestedMap(f.(map[string]any), "secretRef")
					if !ok {
						continue
					}
					if ref["name"] != "settings" || ref["optional"] != true {
						t.Errorf("%s: envFrom Secret %v: only the optional \"settings\" may be read whole", id, ref["name"])
					}
				}
			}
			volumes, _, _ := unstructured.NestedSlice(podSpec(o), "volumes")
			for _, v := range volumes {
				if name, ok, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); ok {
					if _, provided := keys[base(name)]; !provided {
						t.Errorf("%s: mounts Secret %q, which the operator does not provide", id, name)
					}
				}
			}
		}
	}
}
