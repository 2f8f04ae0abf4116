package controllers

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodProblem(t *testing.T) {
	older := metav1.NewTime(time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC))
	newer := metav1.NewTime(older.Add(time.Minute))
	pod := func(created metav1.Time, mutate func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "btc-helper-1", CreationTimestamp: created}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
		mutate(&p)
		return p
	}
	crashed := &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
		Message: "error: connecting to the ledger database: dial tcp 127.0.0.1:5432: connect: connection refused\n"}
	for _, tc := range []struct {
		name        string
		pods        []corev1.Pod
		reason      string
		failing     bool
		messageHas  []string
		messageLack string
	}{
		{"no pods", nil, "", false, nil, ""},
		{"init container crash loop with its last words", []corev1.Pod{pod(newer, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "initializedb", RestartCount: 4,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: crashed}}}
		})}, ReasonInitContainerFailing, true, []string{"initializedb", "CrashLoopBackOff", "4 restarts", "exit code 1", "127.0.0.1:5432"}, ""},
		{"helper crash loop", []corev1.Pod{pod(newer, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "helper", RestartCount: 2,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: crashed}}}
		})}, ReasonHelperCrashLooping, true, []string{"container helper", "connection refused"}, ""},
		{"image cannot be pulled", []corev1.Pod{pod(newer, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "helper", Image: "cryptoassets-operator:v1",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "image not present"}}}}
		})}, ReasonImagePullFailed, true, []string{"cryptoassets-operator:v1", "image not present"}, ""},
		{"unschedulable", []corev1.Pod{pod(newer, func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/1 nodes are available: Insufficient memory."}}
		})}, ReasonUnschedulable, true, []string{"Insufficient memory"}, ""},
		{"running, not ready: not a failure", []corev1.Pod{pod(newer, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "helper", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		})}, ReasonHelperNotReady, false, []string{"not ready"}, "restarted"},
		{"starting", []corev1.Pod{pod(newer, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "helper", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
		})}, ReasonHelperStarting, false, []string{"PodInitializing"}, ""},
		{"the newest pod counts, a terminating one does not", []corev1.Pod{
			pod(older, func(p *corev1.Pod) {
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "helper", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
			}),
			pod(newer, func(p *corev1.Pod) {
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "helper", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
			}),
			pod(metav1.NewTime(newer.Add(time.Minute)), func(p *corev1.Pod) {
				p.DeletionTimestamp = &newer
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "helper", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
			}),
		}, ReasonHelperStarting, false, []string{"ContainerCreating"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg, failing := podProblem(tc.pods)
			if reason != tc.reason || failing != tc.failing {
				t.Fatalf("got %q failing=%v (%s), want %q failing=%v", reason, failing, msg, tc.reason, tc.failing)
			}
			for _, s := range tc.messageHas {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
			if tc.messageLack != "" && strings.Contains(msg, tc.messageLack) {
				t.Errorf("message %q has %q", msg, tc.messageLack)
			}
		})
	}
}
