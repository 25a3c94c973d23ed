// Package recent remembers values for a while. The operator uses it for
// what it wrote a moment ago and its caches may not show yet.
package recent

import (
	"sync"
	"time"
)

// Memory keeps each value at least For after it was added and at most twice
// that, unless it is forgotten sooner: values are kept in two generations,
// and the older one is dropped whole when the newer one is For old. A value
// nobody forgets therefore does not stay for ever. The zero value with For
// set is ready to use.
type Memory[K comparable, V any] struct {
	For time.Duration

	mu       sync.Mutex
	current  map[K]V
	previous map[K]V
	since    time.Time
}

// Add keeps v under k, at now.
func (m *Memory[K, V]) Add(k K, v V, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.since) >= m.For {
		m.previous, m.current, m.since = m.current, nil, now
	}
	delete(m.previous, k)
	if m.current == nil {
		m.current = map[K]V{}
	}
	m.current[k] = v
}

// Get returns the value kept under k.
func (m *Memory[K, V]) Get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.current[k]; ok {
		return v, true
	}
	v, ok := m.previous[k]
	return v, ok
}

// Forget drops the value kept under k.
func (m *Memory[K, V]) Forget(k K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.current, k)
	delete(m.previous, k)
}

// ForgetIf drops the value kept under k when drop says so of it.
func (m *Memory[K, V]) ForgetIf(k K, drop func(V) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.current[k]; ok && drop(v) {
		delete(m.current, k)
	}
	if v, ok := m.previous[k]; ok && drop(v) {
		delete(m.previous, k)
	}
}
