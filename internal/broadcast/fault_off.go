//go:build !faultinject

package broadcast

// faultHook is nil in real builds: the fault-injection point exists only with -tags faultinject.
func faultHook() func(string) error { return nil }
