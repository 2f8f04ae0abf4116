package controllers

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Reasons the helper pod gives for not being ready; they go into Ready (and Degraded when
// waiting will not help) so `kubectl get ca` answers "why" without reading pod logs.
const (
	ReasonUnschedulable        = "Unschedulable"
	ReasonImagePullFailed      = "ImagePullFailed"
	ReasonContainerConfigError = "ContainerConfigError"
	ReasonInitContainerFailing = "InitContainerFailing"
	ReasonHelperCrashLooping   = "HelperCrashLooping"
	ReasonHelperNotReady       = "HelperNotReady"
	ReasonHelperStarting       = "HelperStarting"
)

// maxPodMessage bounds what a pod's last log lines add to a condition message.
const maxPodMessage = 600

// podProblem says why the helper's pods are not ready: the reason, a message with the container's
// last words (its termination message, which FallbackToLogsOnError fills with the log's tail),
// and whether it is a failure that needs a person (true) or a start that is still under way.
// It looks at the newest pod that is not being deleted. An empty reason means nothing is wrong
// with the pods (the Deployment is simply not yet available).
func podProblem(pods []corev1.Pod) (reason, message string, failing bool) {
	var live []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return "", "", false
	}
	sort.Slice(live, func(i, j int) bool { return live[j].CreationTimestamp.Before(&live[i].CreationTimestamp) })
	p := live[0]
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return ReasonUnschedulable, fmt.Sprintf("helper pod %s cannot be scheduled: %s", p.Name, c.Message), true
		}
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0 {
			continue
		}
		if r, m, f, ok := containerProblem(p.Name, "init container", cs); ok {
			if r == ReasonHelperCrashLooping {
				r = ReasonInitContainerFailing
			}
			return r, m, f
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if r, m, f, ok := containerProblem(p.Name, "container", cs); ok {
			return r, m, f
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil && !cs.Ready {
			msg := fmt.Sprintf("helper pod %s: container %s is running but not ready (its /readyz says it is not the active helper or has not started its API yet)", p.Name, cs.Name)
			if cs.RestartCount > 0 {
				msg += fmt.Sprintf("; restarted %d times%s", cs.RestartCount, lastWords(cs.LastTerminationState.Terminated))
			}
			return ReasonHelperNotReady, msg, false
		}
	}
	return "", "", false
}

// containerProblem describes a container that is waiting on something that will not pass by
// itself, or that keeps failing.
func containerProblem(pod, kind string, cs corev1.ContainerStatus) (reason, message string, failing, ok bool) {
	w := cs.State.Waiting
	switch {
	case w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" || w.Reason == "InvalidImageName" || w.Reason == "ErrImageNeverPull"):
		return ReasonImagePullFailed, fmt.Sprintf("helper pod %s: %s %s cannot get its image %s: %s: %s", pod, kind, cs.Name, cs.Image, w.Reason, w.Message), true, true
	case w != nil && (w.Reason == "CreateContainerConfigError" || w.Reason == "CreateContainerError" || w.Reason == "RunContainerError"):
		return ReasonContainerConfigError, fmt.Sprintf("helper pod %s: %s %s cannot start: %s: %s", pod, kind, cs.Name, w.Reason, w.Message), true, true
	case w != nil && w.Reason == "CrashLoopBackOff":
		return ReasonHelperCrashLooping, fmt.Sprintf("helper pod %s: %s %s keeps failing (CrashLoopBackOff, %d restarts)%s",
			pod, kind, cs.Name, cs.RestartCount, lastWords(cs.LastTerminationState.Terminated)), true, true
	case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
		return ReasonHelperCrashLooping, fmt.Sprintf("helper pod %s: %s %s failed%s", pod, kind, cs.Name, lastWords(cs.State.Terminated)), true, true
	case w != nil && (w.Reason == "PodInitializing" || w.Reason == "ContainerCreating"):
		return ReasonHelperStarting, fmt.Sprintf("helper pod %s: %s %s is starting (%s)", pod, kind, cs.Name, w.Reason), false, true
	}
	return "", "", false, false
}

// lastWords renders a terminated container's exit code and the end of its message.
func lastWords(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return ""
	}
	msg := strings.TrimSpace(t.Message)
	if len(msg) > maxPodMessage {
		msg = "..." + msg[len(msg)-maxPodMessage:]
	}
	out := fmt.Sprintf("; last exit code %d", t.ExitCode)
	if t.Reason != "" && t.Reason != "Error" {
		out += " (" + t.Reason + ")"
	}
	if msg != "" {
		out += ": " + msg
	}
	return out
}
