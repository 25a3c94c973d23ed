package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func TestSummarize(t *testing.T) {
	namespaceReady := func(status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.NamespaceReadyCondition, Status: status, Reason: reason, Message: reason + " message"}
	}
	cases := []struct {
		name            string
		parts           []metav1.Condition
		err             error
		wantReady       metav1.ConditionStatus
		wantReason      string
		wantStalled     bool
		wantReconciling bool
		wantObserved    bool
	}{
		{name: "every part ready", parts: []metav1.Condition{namespaceReady(metav1.ConditionTrue, "Applied"),
			{Type: v1alpha1.DatabaseReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.DatabaseProvisionedReason},
			{Type: v1alpha1.AppsReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.AppsAvailableReason},
			{Type: v1alpha1.DomainsReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.DomainsVerifiedReason},
			{Type: v1alpha1.BackupsReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.BackupsScheduledReason}},
			wantReady: metav1.ConditionTrue, wantReason: v1alpha1.ReadyReason, wantObserved: true},
		{name: "backups failing", parts: []metav1.Condition{namespaceReady(metav1.ConditionTrue, "Applied"),
			{Type: v1alpha1.DatabaseReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.DatabaseProvisionedReason},
			{Type: v1alpha1.AppsReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.AppsAvailableReason},
			{Type: v1alpha1.DomainsReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.DomainsVerifiedReason},
			{Type: v1alpha1.BackupsReadyCondition, Status: metav1.ConditionFalse, Reason: v1alpha1.BackupMissingReason}},
			wantReady: metav1.ConditionFalse, wantReason: v1alpha1.BackupMissingReason, wantReconciling: true, wantObserved: true},
		{name: "plan missing", err: reconcile.TerminalError(errPlanNotFound),
			wantReady: metav1.ConditionFalse, wantReason: v1alpha1.PlanNotFoundReason, wantStalled: true, wantObserved: true},
		{name: "namespace taken", parts: []metav1.Condition{namespaceReady(metav1.ConditionFalse, v1alpha1.NamespaceOwnedElsewhereReason)},
			err:       reconcile.TerminalError(errNamespaceOwnedElsewhere),
			wantReady: metav1.ConditionFalse, wantReason: v1alpha1.NamespaceOwnedElsewhereReason, wantStalled: true, wantObserved: true},
		{name: "apply failed, retried", parts: []metav1.Condition{namespaceReady(metav1.ConditionFalse, v1alpha1.NamespaceApplyFailedReason)},
			err:       errors.New("connection refused"),
			wantReady: metav1.ConditionFalse, wantReason: v1alpha1.NamespaceApplyFailedReason, wantReconciling: true},
		{name: "error before any part", err: errors.New("timeout"),
			wantReady: metav1.ConditionFalse, wantReason: v1alpha1.ProgressingReason, wantReconciling: true},
		{name: "database down after the namespace", parts: []metav1.Condition{namespaceReady(metav1.ConditionTrue, "Applied"),
			{Type: v1alpha1.DatabaseReadyCondition, Status: metav1.ConditionFalse, Reason: v1alpha1.ServerUnreachableReason}},
			err:       errors.New("connection refused"),
			wantReady: metav1.ConditionFalse, wantReason: v1alpha1.ServerUnreachableReason, wantReconciling: true},
		{name: "waiting on a part", parts: []metav1.Condition{namespaceReady(metav1.ConditionFalse, v1alpha1.NamespaceTerminatingReason)},
			wantReady: metav1.ConditionFalse, wantReason: v1alpha1.NamespaceTerminatingReason, wantReconciling: true, wantObserved: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			coop := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "c", Generation: 4}, Spec: v1alpha1.CooperativeSpec{Plan: "p"}}
			coop.Status.ObservedGeneration = 3
			// Left over from an earlier pass: must not survive a change of state.
			meta.SetStatusCondition(&coop.Status.Conditions, metav1.Condition{Type: v1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: "Old"})
			for _, p := range tc.parts {
				meta.SetStatusCondition(&coop.Status.Conditions, p)
			}
			summarize(coop, tc.err)

			ready := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.ReadyCondition)
			if ready == nil || ready.Status != tc.wantReady || ready.Reason != tc.wantReason {
				t.Errorf("Ready = %+v, want %s/%s", ready, tc.wantReady, tc.wantReason)
			}
			if got := meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.StalledCondition); got != tc.wantStalled {
				t.Errorf("Stalled = %v, want %v", got, tc.wantStalled)
			}
			if got := meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.ReconcilingCondition); got != tc.wantReconciling {
				t.Errorf("Reconciling = %v, want %v", got, tc.wantReconciling)
			}
			if got := coop.Status.ObservedGeneration == 4; got != tc.wantObserved {
				t.Errorf("observedGeneration = %d, bumped %v, want bumped %v", coop.Status.ObservedGeneration, got, tc.wantObserved)
			}
		})
	}
}

func TestReadyChangedPassesOnlyReadyFlips(t *testing.T) {
	ready := func(status metav1.ConditionStatus) []metav1.Condition {
		return []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: status, Reason: "x"}}
	}
	server := func(s metav1.ConditionStatus) *v1alpha1.DatabaseServer {
		return &v1alpha1.DatabaseServer{Status: v1alpha1.DatabaseServerStatus{Conditions: ready(s)}}
	}
	store := func(s metav1.ConditionStatus) *v1alpha1.BackupStore {
		return &v1alpha1.BackupStore{Status: v1alpha1.BackupStoreStatus{Conditions: ready(s)}}
	}
	for _, tc := range []struct {
		name     string
		old, new client.Object
		want     bool
	}{
		{"server turns Ready", server(metav1.ConditionFalse), server(metav1.ConditionTrue), true},
		{"server stays Ready", server(metav1.ConditionTrue), server(metav1.ConditionTrue), false},
		{"store goes down", store(metav1.ConditionTrue), store(metav1.ConditionFalse), true},
		{"store stays down", store(metav1.ConditionFalse), store(metav1.ConditionFalse), false},
	} {
		if got := (readyChanged{}).Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReadyEventsSkipTheFirstReady(t *testing.T) {
	withReady := func(status metav1.ConditionStatus, reason string, provisioned bool) *v1alpha1.Cooperative {
		coop := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "c"}}
		if reason != "" {
			meta.SetStatusCondition(&coop.Status.Conditions, metav1.Condition{Type: v1alpha1.ReadyCondition, Status: status, Reason: reason})
		}
		if provisioned {
			coop.Status.Initialization = &v1alpha1.CooperativeInitialization{Provisioned: true}
		}
		return coop
	}
	for _, tc := range []struct {
		name          string
		before, after *v1alpha1.Cooperative
		want          string
	}{
		{"new coop on its way", withReady("", "", false), withReady(metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason, false), ""},
		{"new coop's next step", withReady(metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason, false),
			withReady(metav1.ConditionFalse, v1alpha1.AppsProgressingReason, false), ""},
		{"first Ready", withReady(metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason, false),
			withReady(metav1.ConditionTrue, v1alpha1.ReadyReason, true), ""},
		{"falls", withReady(metav1.ConditionTrue, v1alpha1.ReadyReason, true),
			withReady(metav1.ConditionFalse, v1alpha1.BackupMissingReason, true), "Warning BackupMissing"},
		{"Ready again", withReady(metav1.ConditionFalse, v1alpha1.BackupMissingReason, true),
			withReady(metav1.ConditionTrue, v1alpha1.ReadyReason, true), "Normal Ready"},
		{"failed before its first Ready", withReady("", "", false),
			withReady(metav1.ConditionFalse, v1alpha1.PlanNotFoundReason, false), "Warning PlanNotFound"},
	} {
		recorder := events.NewFakeRecorder(1)
		(&CooperativeReconciler{Recorder: recorder}).recordTransition(tc.before, tc.after)
		got := ""
		select {
		case e := <-recorder.Events:
			got = strings.Join(strings.Fields(e)[:2], " ")
		default:
		}
		if got != tc.want {
			t.Errorf("%s: event %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestWaitingStepsOfANewCoop(t *testing.T) {
	coop := func(status metav1.ConditionStatus, reason string, change func(*v1alpha1.Cooperative)) *v1alpha1.Cooperative {
		c := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "c"}}
		c.Status.Database = &v1alpha1.DatabaseStatus{Mode: v1alpha1.DatabaseModeDedicated, Host: "database-rw"}
		c.Status.Apps = []v1alpha1.AppStatus{{Name: "web", Message: reason}}
		if reason != "" {
			meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: v1alpha1.ReadyCondition, Status: status, Reason: reason, Message: reason})
		}
		if change != nil {
			change(c)
		}
		return c
	}
	clusterNotReady := coop(metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason, nil)
	for _, tc := range []struct {
		name          string
		before, after *v1alpha1.Cooperative
		want          bool
	}{
		{"database up, apps rolling out", clusterNotReady, coop(metav1.ConditionFalse, v1alpha1.AppsProgressingReason, nil), true},
		{"first pass, waiting", coop("", "", nil), clusterNotReady, true},
		{"first pass, apps rolling out", coop("", "", nil), coop(metav1.ConditionFalse, v1alpha1.AppsProgressingReason, nil), true},
		{"first pass, Ready", coop("", "", nil), coop(metav1.ConditionTrue, v1alpha1.ReadyReason, nil), false},
		{"first pass, a failure", coop("", "", nil), coop(metav1.ConditionFalse, v1alpha1.ReconcileErrorReason, nil), false},
		{"first pass, no such plan", coop("", "", nil), coop(metav1.ConditionFalse, v1alpha1.PlanNotFoundReason, nil), false},
		{"first Ready", clusterNotReady, coop(metav1.ConditionTrue, v1alpha1.ReadyReason, nil), false},
		{"a failure", clusterNotReady, coop(metav1.ConditionFalse, v1alpha1.AppChecksFailedReason, nil), false},
		{"out of a failure", coop(metav1.ConditionFalse, v1alpha1.ReconcileErrorReason, nil), clusterNotReady, false},
		{"stalled", clusterNotReady, coop(metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason, func(c *v1alpha1.Cooperative) {
			meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: v1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.ClusterNotReadyReason})
		}), false},
		{"a coop that was Ready", coop(metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason, func(c *v1alpha1.Cooperative) {
			c.Status.Initialization = &v1alpha1.CooperativeInitialization{Provisioned: true}
		}), coop(metav1.ConditionFalse, v1alpha1.AppsProgressingReason, func(c *v1alpha1.Cooperative) {
			c.Status.Initialization = &v1alpha1.CooperativeInitialization{Provisioned: true}
		}), false},
		{"the database moved", clusterNotReady, coop(metav1.ConditionFalse, v1alpha1.AppsProgressingReason, func(c *v1alpha1.Cooperative) {
			c.Status.Database.Host = "elsewhere"
		}), false},
		{"an app's version", clusterNotReady, coop(metav1.ConditionFalse, v1alpha1.AppsProgressingReason, func(c *v1alpha1.Cooperative) {
			c.Status.Apps[0].Version = "1.0"
		}), false},
		{"a new generation", clusterNotReady, coop(metav1.ConditionFalse, v1alpha1.AppsProgressingReason, func(c *v1alpha1.Cooperative) {
			c.Status.ObservedGeneration = 2
		}), false},
	} {
		if got := waitingStep(tc.before, tc.after); got != tc.want {
			t.Errorf("%s: waitingStep %v, want %v", tc.name, got, tc.want)
		}
	}

	var held heldSteps
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	if got := held.hold("c", start); got != stepHold {
		t.Errorf("first hold: %v, want %v", got, stepHold)
	}
	if got := held.hold("c", start.Add(2*time.Second)); got != stepHold-2*time.Second {
		t.Errorf("hold 2s later: %v, want %v", got, stepHold-2*time.Second)
	}
	if got := held.hold("c", start.Add(stepHold)); got != 0 {
		t.Errorf("hold once stepHold has passed: %v, want 0", got)
	}
	held.forget("c")
	if got := held.hold("c", start.Add(time.Minute)); got != stepHold {
		t.Errorf("hold after forget: %v, want %v", got, stepHold)
	}
}

func TestStatusWrittenIsReadUntilTheCacheHasIt(t *testing.T) {
	at := func(rv string, reason string) *v1alpha1.Cooperative {
		c := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "c", ResourceVersion: rv}}
		if reason != "" {
			meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: reason})
		}
		return c
	}
	reason := func(c *v1alpha1.Cooperative) string {
		if ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ReadyCondition); ready != nil {
			return ready.Reason
		}
		return ""
	}

	var w statusWrites
	w.memory.For = statusMemory
	if got := w.newest(at("1", "")); got.ResourceVersion != "1" {
		t.Fatalf("nothing written: resourceVersion %s, want the cache's 1", got.ResourceVersion)
	}
	w.record("1", at("2", v1alpha1.ClusterNotReadyReason))
	got := w.newest(at("1", ""))
	if got.ResourceVersion != "2" || reason(got) != v1alpha1.ClusterNotReadyReason {
		t.Errorf("cache behind the write: resourceVersion %s, Ready %q; want the written 2, %s", got.ResourceVersion, reason(got), v1alpha1.ClusterNotReadyReason)
	}
	got.Status.Conditions = nil
	if again := w.newest(at("1", "")); reason(again) != v1alpha1.ClusterNotReadyReason {
		t.Error("a change to what newest returned reached what is kept")
	}
	w.seen("c", "1")
	if got := w.newest(at("1", "")); got.ResourceVersion != "2" {
		t.Errorf("after an event of the version written on: resourceVersion %s, want the written 2", got.ResourceVersion)
	}
	if got := w.newest(at("3", v1alpha1.AppsProgressingReason)); got.ResourceVersion != "3" {
		t.Errorf("cache past the write: resourceVersion %s, want the cache's 3", got.ResourceVersion)
	}
	w.seen("c", "2")
	if got := w.newest(at("1", "")); got.ResourceVersion != "1" {
		t.Errorf("after the cache had the write: resourceVersion %s, want the cache's 1", got.ResourceVersion)
	}
	w.record("1", at("2", v1alpha1.ClusterNotReadyReason))
	w.forget("c")
	if got := w.newest(at("1", "")); got.ResourceVersion != "1" {
		t.Errorf("after forget: resourceVersion %s, want the cache's 1", got.ResourceVersion)
	}
}
