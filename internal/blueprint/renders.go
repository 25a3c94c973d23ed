package blueprint

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Renders runs kustomize once for all the coops that use an app the same
// way, and keeps that render. The values that differ from coop to coop (the
// namespace, the labels' values, the parameters' values) go into kustomize
// as placeholders, and each coop's render is the kept one with its own
// values in their place: a few kilobytes of copying instead of a kustomize
// run of about 4 ms and 1.7 MB of garbage, for every coop of a new process
// and for every change. The zero value is ready to use, and runs any number
// of renders at once until Bound is called.
type Renders struct {
	// slots, when set, holds one token per render running.
	slots chan struct{}
	// inFlight runs one kustomize at a time for a render.
	inFlight singleflight.Group

	mu sync.Mutex
	// kept is by the sum of the files and the input with placeholders.
	kept map[[sha256.Size]byte]*keptRender
	// tick orders the kept renders by last use.
	tick uint64
	// runs counts the renders kustomize ran.
	runs int
}

type keptRender struct {
	objects [][]byte
	// shared is false when a placeholder ended up in an object's name,
	// which kustomize matches references against.
	shared bool
	used   uint64
}

// maxKept bounds the kept renders: one per blueprint, version, app name and
// set of label keys in use, and one per coop for the bases that cannot be
// shared (see placeholders).
const maxKept = 256

// Render is the package's Render, from a kept render when one was made for
// the same files and the same input but for the coop's own values.
func (r *Renders) Render(files map[string]string, in Input) ([]*unstructured.Unstructured, error) {
	shape, values := placeholders(files, in)
	k, err := r.render(files, shape)
	if err != nil {
		return nil, err
	}
	if len(values) > 0 && !k.shared {
		// Rendered apart, as Render would.
		if k, err = r.render(files, in); err != nil {
			return nil, err
		}
		values = nil
	}
	if len(values) == 0 {
		return decodeAll(k.objects)
	}
	fill := strings.NewReplacer(values...)
	out := make([][]byte, len(k.objects))
	for i, data := range k.objects {
		out[i] = []byte(fill.Replace(string(data)))
	}
	return decodeAll(out)
}

// render returns the kept render of files and in, running kustomize when
// there is none.
func (r *Renders) render(files map[string]string, in Input) (*keptRender, error) {
	sum, err := renderSum(files, in)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	k, ok := r.kept[sum]
	if ok {
		r.tick++
		k.used = r.tick
	}
	r.mu.Unlock()
	if ok {
		return k, nil
	}
	// The coops of a new process all ask for the same render at once: one
	// runs kustomize, the others wait for its result.
	v, err, _ := r.inFlight.Do(string(sum[:]), func() (any, error) {
		r.mu.Lock()
		k, ok := r.kept[sum]
		r.mu.Unlock()
		if ok {
			// Kept since the look above.
			return k, nil
		}
		return r.run(sum, files, in)
	})
	if err != nil {
		return nil, err
	}
	return v.(*keptRender), nil
}

// run runs kustomize and keeps the render under sum.
func (r *Renders) run(sum [sha256.Size]byte, files map[string]string, in Input) (*keptRender, error) {
	if r.slots != nil {
		r.slots <- struct{}{}
		defer func() { <-r.slots }()
	}
	rendered, err := render(files, in)
	if err != nil {
		return nil, err
	}
	k := &keptRender{objects: rendered, shared: !slices.ContainsFunc(rendered, namesPlaceholder)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs++
	if r.kept == nil {
		r.kept = map[[sha256.Size]byte]*keptRender{}
	}
	if len(r.kept) >= maxKept {
		r.evict()
	}
	r.tick++
	k.used = r.tick
	r.kept[sum] = k
	return k, nil
}

// evict forgets the kept render used longest ago.
func (r *Renders) evict() {
	var oldest [sha256.Size]byte
	first := true
	for sum, k := range r.kept {
		if first || k.used < r.kept[oldest].used {
			oldest, first = sum, false
		}
	}
	delete(r.kept, oldest)
}

// Bound lets at most n renders run at once; n < 1 leaves them unbounded.
// A render is CPU and short-lived garbage only, so beyond the cores more
// renders at once finish no sooner and hold more memory: after a restart,
// every coop renders at once. Call it before the first Render.
func (r *Renders) Bound(n int) {
	if n > 0 {
		r.slots = make(chan struct{}, n)
	}
}

// placeholderPrefix starts every placeholder. A base that holds it is
// rendered with its values as they are.
const placeholderPrefix = "cooperator-placeholder-"

// plainValue is a value kustomize can only take as a string and copies as
// it is: it starts with a letter (so YAML reads no number in it), and has no
// quotes, spaces or escapes. Placeholders are plain too, so a value and its
// placeholder go through kustomize alike.
var plainValue = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._:/-]*$`)

// yamlWords are the plain values YAML 1.1 reads as booleans or null.
var yamlWords = []string{"y", "n", "yes", "no", "true", "false", "on", "off", "null"}

func plain(v string) bool {
	return plainValue.MatchString(v) && !slices.Contains(yamlWords, strings.ToLower(v))
}

// labelValue is a label's value, as the API server allows it. The labels go
// on after kustomize has run, as strings, so any such value can be held.
var labelValue = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// kustomizeAnnotations are the prefixes of kustomize's own annotations,
// which act on an object by its content (a hash suffix of its name, an
// object left out).
var kustomizeAnnotations = []string{"config.kubernetes.io", "config.k8s.io"}

// placeholders returns in with the values it can hold replaced by
// placeholders, one per distinct value, and the pairs of placeholder and
// value that give in's render back from shape's. A base that brings its own
// kustomization, or uses kustomize's annotations, keeps its values: its
// generators may hash what a placeholder would stand in.
func placeholders(files map[string]string, in Input) (shape Input, values []string) {
	if _, ok := files["kustomization.yaml"]; ok {
		return in, nil
	}
	for _, content := range files {
		if strings.Contains(content, placeholderPrefix) || slices.ContainsFunc(kustomizeAnnotations, func(a string) bool {
			return strings.Contains(content, a)
		}) {
			return in, nil
		}
	}
	// kustomize matches references by name and namespace: a value that it
	// could take for the name of an object stays as it is, and equal values
	// share a placeholder, so that what matched still matches.
	nameLike := func(v string) bool {
		if v == ParametersConfigMap || slices.Contains(in.Provided, v) {
			return true
		}
		for _, content := range files {
			if strings.Contains(content, v) {
				return true
			}
		}
		return false
	}
	copied := func(v string) bool {
		rest, prefixed := strings.CutPrefix(v, in.NamePrefix)
		return plain(v) && !nameLike(v) && (!prefixed || !nameLike(rest))
	}
	held := map[string]string{}
	hold := func(v string, holds func(string) bool) string {
		if p, ok := held[v]; ok {
			return p
		}
		// Fixed width, so that no placeholder is the start of another.
		if len(held) == 10000 || !holds(v) {
			return v
		}
		p := fmt.Sprintf("%s%04d", placeholderPrefix, len(held))
		held[v] = p
		values = append(values, p, v)
		return p
	}
	shape = in
	// The labels last: a value held for them alone is not copied by
	// kustomize, so it must not stand in for a namespace or a parameter.
	shape.Namespace = hold(in.Namespace, copied)
	shape.Parameters = holdValues(in.Parameters, func(v string) string { return hold(v, copied) })
	shape.Labels = holdValues(in.Labels, func(v string) string { return hold(v, labelValue.MatchString) })
	return shape, values
}

// holdValues is m with each value through hold, in the order of the keys.
func holdValues(m map[string]string, hold func(string) string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out[k] = hold(m[k])
	}
	return out
}

// namesPlaceholder tells whether a rendered object's name holds a
// placeholder.
func namesPlaceholder(data []byte) bool {
	if !bytes.Contains(data, []byte(placeholderPrefix)) {
		return false
	}
	var obj struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return true
	}
	return strings.Contains(obj.Metadata.Name, placeholderPrefix)
}

// renderSum hashes what a render depends on. encoding/json writes map keys
// in order, so equal inputs give equal sums.
func renderSum(files map[string]string, in Input) ([sha256.Size]byte, error) {
	data, err := json.Marshal(struct {
		Files map[string]string
		In    Input
	}{files, in})
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("while hashing the render's input: %w", err)
	}
	return sha256.Sum256(data), nil
}
