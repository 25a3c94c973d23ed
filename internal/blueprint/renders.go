package blueprint

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Renders keeps each app's last render, as JSON, with a hash of what it was
// rendered from. A render depends on nothing but its files and its input,
// so a coop reconciled again with neither changed decodes its objects
// instead of running kustomize: that saves most of a reconcile's CPU and the
// memory of a render in flight. The zero value is ready to use, and runs
// any number of renders at once until Bound is called.
type Renders struct {
	// slots, when set, holds one token per render running.
	slots chan struct{}

	mu sync.Mutex
	// last is by owner (a coop's name), then by app.
	last map[string]map[string]lastRender
	// runs counts the renders kustomize ran.
	runs int
}

type lastRender struct {
	sum     [sha256.Size]byte
	objects [][]byte
}

// Render is the package's Render for one app of owner, from memory when
// files and in are those of the app's last render.
func (r *Renders) Render(owner, app string, files map[string]string, in Input) ([]*unstructured.Unstructured, error) {
	sum, err := renderSum(files, in)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	last, ok := r.last[owner][app]
	r.mu.Unlock()
	if ok && last.sum == sum {
		return decodeAll(last.objects)
	}
	if r.slots != nil {
		r.slots <- struct{}{}
	}
	rendered, err := render(files, in)
	if r.slots != nil {
		<-r.slots
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.runs++
	if r.last == nil {
		r.last = map[string]map[string]lastRender{}
	}
	if r.last[owner] == nil {
		r.last[owner] = map[string]lastRender{}
	}
	r.last[owner][app] = lastRender{sum: sum, objects: rendered}
	r.mu.Unlock()
	return decodeAll(rendered)
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

// Keep forgets the renders of owner's apps that are not in apps.
func (r *Renders) Keep(owner string, apps []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for app := range r.last[owner] {
		if !slices.Contains(apps, app) {
			delete(r.last[owner], app)
		}
	}
	if len(r.last[owner]) == 0 {
		delete(r.last, owner)
	}
}

// Forget forgets every render of owner.
func (r *Renders) Forget(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, owner)
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
