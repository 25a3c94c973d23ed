package recent

import (
	"testing"
	"time"
)

func TestMemoryKeepsValuesForAWhile(t *testing.T) {
	m := Memory[string, int]{For: time.Minute}
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	if _, ok := m.Get("a"); ok {
		t.Fatal("a value before any was added")
	}
	m.Add("a", 1, start)
	m.Add("b", 2, start.Add(30*time.Second))
	if v, ok := m.Get("a"); !ok || v != 1 {
		t.Fatalf("a: %d, %v; want 1 kept", v, ok)
	}
	m.ForgetIf("b", func(v int) bool { return v != 2 })
	if _, ok := m.Get("b"); !ok {
		t.Error("b dropped although ForgetIf's drop said no")
	}
	m.ForgetIf("b", func(v int) bool { return v == 2 })
	if _, ok := m.Get("b"); ok {
		t.Error("b kept although ForgetIf's drop said yes")
	}

	// A minute on: a new generation starts; a is still kept.
	m.Add("b", 3, start.Add(time.Minute))
	if v, ok := m.Get("a"); !ok || v != 1 {
		t.Errorf("a after a minute: %d, %v; want 1 kept", v, ok)
	}
	// Added again, a moves to the new generation and outlives the old one.
	m.Add("c", 4, start.Add(90*time.Second))
	m.Add("a", 5, start.Add(100*time.Second))
	m.Add("d", 6, start.Add(2*time.Minute))
	if v, ok := m.Get("a"); !ok || v != 5 {
		t.Errorf("a added again: %d, %v; want 5 kept", v, ok)
	}
	if v, ok := m.Get("b"); !ok || v != 3 {
		t.Errorf("b a minute after its add: %d, %v; want 3 kept", v, ok)
	}

	// Two minutes after b's add, its generation is dropped.
	m.Add("e", 7, start.Add(3*time.Minute))
	if _, ok := m.Get("b"); ok {
		t.Error("b kept twice For after its add")
	}
	m.Forget("d")
	if _, ok := m.Get("d"); ok {
		t.Error("d kept after Forget")
	}
}
