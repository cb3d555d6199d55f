package nstest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Rerun runs the test t again, alone, inside the network namespace ns
// (`ip netns exec ns`, then the words of wrap, if any), with env added to
// its environment, logs what that run printed, and skips or fails t as
// that run ended. A test calls it from outside the namespace and returns
// after it; inside, env tells it where it is.
func Rerun(t *testing.T, ns string, wrap []string, env ...string) {
	t.Helper()
	args := append(append([]string{"netns", "exec", ns}, wrap...), os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	s := out.String()
	t.Logf("in netns %s:\n%s", ns, s)
	switch {
	case strings.Contains(s, "--- SKIP"):
		t.Skip("skipped in the namespace (see above)")
	case err != nil || !strings.Contains(s, "--- PASS"):
		t.Fatalf("run in netns %s: %v", ns, err)
	}
}
